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
