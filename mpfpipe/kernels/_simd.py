"""Explicit SIMD vectors for Numba kernels: a fixed 64-byte vector type (16 float32 or 8 float64 lanes) with load,
broadcast, fused multiply-add and store, emitted as LLVM vector IR.

Why. A register-blocked convolution keeps a tile of accumulators in vector registers across the whole reduction
(input channels x kernel taps) and stores each once. Numba cannot express that with arrays (a local array lives in
memory, so every multiply-add would load and store its accumulator), and LLVM's auto-vectoriser chooses its own lane
count and reassociation. Here the lane count is part of the type and every multiply-add is ``llvm.fma`` on that
vector: each lane is one exact fused operation, whatever instruction set the code is compiled for (AVX-512 keeps a
vector in one register, AVX2 splits it in two), so a kernel gives the same bits on every x86-64 CPU with FMA.
Locals of these types are SSA values that LLVM keeps in registers.

Loads and stores are unaligned and unchecked: the caller guarantees ``i + lanes <= a.size`` (C-contiguous arrays).
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

BYTES = 64  # one AVX-512 register; on AVX2 two


class Vec(types.Type):
    def __init__(self, dtype):
        self.dtype = dtype
        self.lanes = BYTES // (dtype.bitwidth // 8)
        super().__init__(name=f"Vec({dtype}x{self.lanes})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        scalar = ir.FloatType() if fe_type.dtype == types.float32 else ir.DoubleType()
        super().__init__(dmm, fe_type, ir.VectorType(scalar, fe_type.lanes))


_VEC = {types.float32: Vec(types.float32), types.float64: Vec(types.float64)}


def _ptr(context, builder, aty, arr, idx):
    ary = context.make_array(aty)(context, builder, arr)
    return builder.gep(ary.data, [idx])


@intrinsic
def lanes(typingctx, a):
    """Number of lanes of a vector of a's dtype (a compile-time constant)."""
    n = _VEC[a.dtype].lanes

    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, n)
    return types.intp(a), codegen


@intrinsic
def vload(typingctx, a, i):
    """a.flat[i : i + lanes] as a vector (a C-contiguous)."""
    vt = _VEC[a.dtype]

    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], args[1])
        p = builder.bitcast(p, context.get_value_type(vt).as_pointer())
        return builder.load(p, align=4 if vt.dtype == types.float32 else 8)
    return vt(a, i), codegen


@intrinsic
def vstore(typingctx, a, i, v):
    """a.flat[i : i + lanes] = v."""
    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], args[1])
        p = builder.bitcast(p, context.get_value_type(sig.args[2]).as_pointer())
        builder.store(args[2], p, align=4 if sig.args[2].dtype == types.float32 else 8)
        return context.get_dummy_value()
    return types.none(a, i, v), codegen


@intrinsic
def vbcast(typingctx, a, i):
    """A vector of lanes copies of a.flat[i]."""
    vt = _VEC[a.dtype]

    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], args[1])
        s = builder.load(p)
        ltype = context.get_value_type(vt)
        v = builder.insert_element(ir.Constant(ltype, ir.Undefined), s, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(v, ir.Constant(ltype, ir.Undefined),
                                      ir.Constant(ir.VectorType(ir.IntType(32), vt.lanes), [0] * vt.lanes))
    return vt(a, i), codegen


@intrinsic
def vzero(typingctx, a):
    """A zero vector of a's dtype."""
    vt = _VEC[a.dtype]

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vt), None)
    return vt(a), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """a * b + c, each lane one fused multiply-add (llvm.fma: the same rounding on every instruction set)."""
    def codegen(context, builder, sig, args):
        ltype = context.get_value_type(sig.args[0])
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ltype, [ltype] * 3),
                                            f"llvm.fma.v{sig.args[0].lanes}f{sig.args[0].dtype.bitwidth}")
        return builder.call(fn, list(args))
    return a(a, b, c), codegen


@intrinsic
def vadd(typingctx, a, b):
    """a + b, lane by lane."""
    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])
    return a(a, b), codegen


@intrinsic
def vmaxgt(typingctx, a, b):
    """a where a > b, else b, lane by lane: the scalar ``a if a > b else b`` (an ordered compare, so a NaN in a
    keeps b and a NaN in b stays), the same bits as that scalar rule on every instruction set."""
    def codegen(context, builder, sig, args):
        return builder.select(builder.fcmp_ordered(">", args[0], args[1]), args[0], args[1])
    return a(a, b), codegen


def _every_other(a, first):
    """(signature, codegen) of lanes first, first + 2, ... of the 2*lanes values of two vectors of a's type."""
    def codegen(context, builder, sig, args):
        n = sig.args[0].lanes
        idx = ir.Constant(ir.VectorType(ir.IntType(32), n), list(range(first, 2 * n, 2)))
        return builder.shuffle_vector(args[0], args[1], idx)
    return a(a, a), codegen


@intrinsic
def veven(typingctx, a, b):
    """Lanes 0, 2, 4, ... of the 2*lanes values a then b (de-interleaving: a shuffle, no arithmetic)."""
    return _every_other(a, 0)


@intrinsic
def vodd(typingctx, a, b):
    """Lanes 1, 3, 5, ... of the 2*lanes values a then b."""
    return _every_other(a, 1)


def _zip_half(a, first):
    """(signature, codegen) of a[first], b[first], a[first + 1], b[first + 1], ... (half the lanes of each)."""
    def codegen(context, builder, sig, args):
        n = sig.args[0].lanes
        idx = [v for i in range(n // 2) for v in (first + i, n + first + i)]
        return builder.shuffle_vector(args[0], args[1], ir.Constant(ir.VectorType(ir.IntType(32), n), idx))
    return a(a, a), codegen


@intrinsic
def vzip_lo(typingctx, a, b):
    """a0, b0, a1, b1, ...: the first halves of a and b interleaved (a shuffle; `veven` / `vodd` undo it)."""
    return _zip_half(a, 0)


@intrinsic
def vzip_hi(typingctx, a, b):
    """The second halves of a and b interleaved."""
    return _zip_half(a, _VEC[a.dtype].lanes // 2)


_F64 = _VEC[types.float64]


@intrinsic
def vzero64(typingctx, a):
    """A zero vector of 8 float64 lanes (whatever a's dtype: the accumulator of `vload64`)."""
    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(_F64), None)
    return _F64(a), codegen


@intrinsic
def vload64(typingctx, a, i):
    """a.flat[i : i + 8] as 8 float64 lanes (float32 widened exactly): sums of float32 data accumulated in float64."""

    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], args[1])
        if sig.args[0].dtype == types.float64:
            return builder.load(builder.bitcast(p, context.get_value_type(_F64).as_pointer()), align=8)
        v32 = builder.load(builder.bitcast(p, ir.VectorType(ir.FloatType(), 8).as_pointer()), align=4)
        return builder.fpext(v32, context.get_value_type(_F64))
    return _F64(a, i), codegen


@intrinsic
def vsum(typingctx, v):
    """The lanes of v summed in float64 by halving, in a fixed order: (lanes 0..h-1) + (lanes h..2h-1) lane by lane,
    then the same on the result down to one lane (log2(lanes) dependent adds instead of lanes - 1). The order is
    part of the emitted IR, so the same bits on every instruction set (a horizontal add left to LLVM's fastmath
    would be reassociated into a tree of its choosing)."""
    def codegen(context, builder, sig, args):
        n = sig.args[0].lanes
        x = args[0]
        if sig.args[0].dtype != types.float64:
            x = builder.fpext(x, ir.VectorType(ir.DoubleType(), n))
        i32 = ir.IntType(32)
        while n > 1:
            h = n // 2
            lo = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(i32, h), list(range(h))))
            hi = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(i32, h), list(range(h, n))))
            x = builder.fadd(lo, hi)
            n = h
        return builder.extract_element(x, ir.Constant(i32, 0))
    return types.float64(v), codegen


@intrinsic
def sload(typingctx, a, i):
    """a.flat[i], a scalar (any C-contiguous array, whatever its number of dimensions)."""
    def codegen(context, builder, sig, args):
        return builder.load(_ptr(context, builder, sig.args[0], args[0], args[1]))
    return a.dtype(a, i), codegen


@intrinsic
def sstore(typingctx, a, i, v):
    """a.flat[i] = v (v converted to a's dtype)."""
    def codegen(context, builder, sig, args):
        val = context.cast(builder, args[2], sig.args[2], sig.args[0].dtype)
        builder.store(val, _ptr(context, builder, sig.args[0], args[0], args[1]))
        return context.get_dummy_value()
    return types.none(a, i, v), codegen


@intrinsic
def sfma(typingctx, a, b, c):
    """a * b + c for float scalars, one fused multiply-add (llvm.fma: the same rounding on every instruction set; a
    multiply and an add would round twice, and fastmath contraction would depend on the target). Mixed float types
    are computed in the widest (a float64 kernel compiles the float32 formulas too, without taking them)."""
    if not all(isinstance(t, types.Float) for t in (a, b, c)):
        return None
    t = max((a, b, c), key=lambda x: x.bitwidth)

    def codegen(context, builder, sig, args):
        ltype = context.get_value_type(t)
        vals = [context.cast(builder, v, s, t) for v, s in zip(args, sig.args)]
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ltype, [ltype] * 3),
                                            f"llvm.fma.f{t.bitwidth}")
        return builder.call(fn, vals)
    return t(a, b, c), codegen
