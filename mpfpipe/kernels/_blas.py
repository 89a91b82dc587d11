"""GEMM for Numba kernels, through scipy's BLAS, in kernels that Numba can cache.

Numba's own ``np.dot`` binds BLAS through a ctypes pointer baked into the compiled code, so no kernel calling it
can be cached: every process recompiled the blocked convolution kernels on first use (34 s for an n3 training
step on this machine, paid again by every Dask worker). Here the addresses of scipy.linalg.cython_blas's sgemm
and dgemm are registered with LLVM under fixed names at import, and the kernels call those names: the cached
machine code holds only the names, which each process binds to its own addresses. `gemm` also takes leading
dimensions, so a kernel can multiply a block in place inside a larger array (no copy in or out).

In reproducible mode (`mpfpipe._reproducible`) `gemm` runs `_rgemm.rgemm` instead, whose summation order does not
depend on the CPU. The switch is a process-wide flag read at run time (`set_reproducible`), registered with LLVM by
name like the BLAS functions: cached kernels serve both modes, and no kernel signature changes. rgemm is reached
through a pointer that the switch binds (`_RGEMM`), so its code is compiled once, by a process that turns the mode
on, and never into the kernels.

Compile time: `gemm` is an intrinsic, a few instructions in its caller, and rgemm is not linked in. As a jitted
function calling rgemm, each caller's literal arguments made a build of gemm, and Numba re-optimised rgemm's
unrolled loops inside every kernel that can reach it (README, "first use": the figures before and after).
"""
import ctypes
import os

import llvmlite.binding as llvm
from llvmlite import ir
from numba import carray, cfunc, types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

from ._rgemm import rgemm

for _name in ("sgemm", "dgemm"):
    llvm.add_symbol(f"mpfpipe_{_name}", get_cython_function_address("scipy.linalg.cython_blas", _name))
_FLAG = ctypes.c_int32(0)
llvm.add_symbol("mpfpipe_reproducible", ctypes.addressof(_FLAG))
# The fixed-order GEMM's entry points (float32, float64), bound on first use: kernels call rgemm through these
# pointers rather than linking its code in. Numba re-optimises every linked callee inside each caller's module, so
# rgemm's unrolled loops had been compiled again in every kernel that can reach `gemm` (2.6 s of the head's 7.3 s
# at first use), although only the reproducible mode runs them.
_RGEMM = (ctypes.c_void_p * 2)()
llvm.add_symbol("mpfpipe_rgemm", ctypes.addressof(_RGEMM))
_ENTRIES = []  # the compiled entry points: they own the code the pointers point at


def _rgemm_entry(ta, tb, m, n, k, pa, lda, pb, ldb, beta, pc, ldc):
    """C-callable `rgemm` on raw pointers; each operand's extent follows from its shape and row stride."""
    a = carray(pa, max(0, (k - 1) * lda + m if ta else (m - 1) * lda + k))
    b = carray(pb, max(0, (n - 1) * ldb + k if tb else (k - 1) * ldb + n))
    c = carray(pc, max(0, (m - 1) * ldc + n))
    rgemm(ta != 0, tb != 0, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)


def _bind_rgemm() -> None:
    """Compile (or load from Numba's cache) the fixed-order GEMM's entry points and point `_RGEMM` at them."""
    if _ENTRIES:
        return
    i8 = types.int64
    for slot, dt in enumerate((types.float32, types.float64)):
        p = types.CPointer(dt)
        entry = cfunc(types.void(i8, i8, i8, i8, i8, p, i8, p, i8, types.float64, p, i8), cache=True)(_rgemm_entry)
        _ENTRIES.append(entry)
        _RGEMM[slot] = entry.address


def set_reproducible(on: bool) -> None:
    """Switch this process's kernels to the fixed-order GEMM (True) or to OpenBLAS (False)."""
    if on:
        _bind_rgemm()  # before the flag: no kernel may reach an unbound pointer
    _FLAG.value = int(bool(on))


def reproducible_active() -> bool:
    """Whether this process's kernels run the fixed-order GEMMs now."""
    return bool(_FLAG.value)


# the mode's switch, MPFPIPE_REPRODUCIBLE (mpfpipe._reproducible.ENV), read here too: the kernels sit below it
set_reproducible(os.environ.get("MPFPIPE_REPRODUCIBLE", "") not in ("", "0"))


def _flag(builder):
    """The reproducible flag's current value as an i1: a load of the external global ``mpfpipe_reproducible``."""
    gv = builder.module.globals.get("mpfpipe_reproducible")
    if gv is None:
        gv = ir.GlobalVariable(builder.module, ir.IntType(32), "mpfpipe_reproducible")
        gv.linkage = "external"
    return builder.icmp_signed("!=", builder.load(gv), ir.Constant(ir.IntType(32), 0))


@intrinsic
def _reproducible(typingctx):
    """Whether the kernels run the fixed-order GEMM now (`set_reproducible`)."""
    return types.boolean(), lambda context, builder, sig, args: _flag(builder)


def _rgemm_call(builder, dt, flags, ints, ptrs, beta):
    """Call the bound fixed-order entry point of dtype ``dt`` (`_RGEMM`)."""
    i64, ptr = ir.IntType(64), ptrs[0].type
    fnty = ir.FunctionType(ir.VoidType(), [i64] * 5 + [ptr, i64, ptr, i64, ir.DoubleType(), ptr, i64])
    gv = builder.module.globals.get("mpfpipe_rgemm")
    if gv is None:
        gv = ir.GlobalVariable(builder.module, ir.ArrayType(ir.IntType(8).as_pointer(), 2), "mpfpipe_rgemm")
        gv.linkage = "external"
    slot = ir.Constant(ir.IntType(32), 0 if dt == types.float32 else 1)
    fn = builder.bitcast(builder.load(builder.gep(gv, [ir.Constant(ir.IntType(32), 0), slot])), fnty.as_pointer())
    (ta, tb), (m, n, k, lda, ldb, ldc), (pa, pb, pc) = flags, ints, ptrs
    builder.call(fn, [builder.zext(ta, i64), builder.zext(tb, i64), m, n, k, pa, lda, pb, ldb, beta, pc, ldc])


def _blas_call(context, builder, dt, flags, ints, ptrs, alpha, beta):
    """Fortran sgemm / dgemm, every argument by pointer (alpha and beta as doubles, passed in dt): row-major
    C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, so the operands swap. The argument slots sit in the
    function's entry block."""
    i8, i32 = ir.IntType(8), ir.IntType(32)
    ft = context.get_value_type(dt)
    if dt == types.float32:
        alpha, beta = builder.fptrunc(alpha, ft), builder.fptrunc(beta, ft)

    def slot(ty, value):
        p = cgutils.alloca_once(builder, ty)
        builder.store(value, p)
        return builder.bitcast(p, i8.as_pointer())

    ch = [slot(i8, builder.select(f, ir.Constant(i8, ord("T")), ir.Constant(i8, ord("N")))) for f in flags]
    m, n, k, lda, ldb, ldc = (slot(i32, builder.trunc(v, i32)) for v in ints)
    pa, pb, pc = (builder.bitcast(p, i8.as_pointer()) for p in ptrs)
    fnty = ir.FunctionType(ir.VoidType(), [i8.as_pointer()] * 13)
    name = "mpfpipe_sgemm" if dt == types.float32 else "mpfpipe_dgemm"
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    builder.call(fn, [ch[1], ch[0], n, m, k, slot(ft, alpha), pb, ldb, pa, lda, slot(ft, beta), pc, ldc])


@intrinsic
def gemm(typingctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Row-major C = alpha op(A) op(B) + beta C, C (m, n), op(A) (m, k), op(B) (k, n); op(X) = X.T if trans_X.

    a, b, c are arrays (any shape) whose first element is the matrix's first; lda, ldb, ldc their row strides in
    elements (A is (m, k) with stride lda, or (k, m) if trans_a). All three share one dtype, float32 or float64.
    An intrinsic, not a jitted function: a call is a few instructions in the caller. As a function it was compiled
    once per caller's literal arguments (six builds, ~0.3 s each, at a fresh install's first use)."""
    if not all(isinstance(x, types.Array) for x in (a, b, c)) or len({a.dtype, b.dtype, c.dtype}) != 1 or \
            c.dtype not in (types.float32, types.float64):
        raise TypeError("gemm: a, b and c must be arrays of one dtype, float32 or float64")
    sig = types.void(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, sig, args):
        tys = sig.args
        dt = tys[11].dtype
        ptr = context.get_value_type(dt).as_pointer()
        flags = [context.cast(builder, args[i], tys[i], types.boolean) for i in (0, 1)]
        ints = [context.cast(builder, args[i], tys[i], types.int64) for i in (2, 3, 4, 7, 9, 12)]
        ptrs = [builder.bitcast(context.make_array(tys[i])(context, builder, args[i]).data, ptr) for i in (6, 8, 11)]
        alpha, beta = (context.cast(builder, args[i], tys[i], types.float64) for i in (5, 10))
        with builder.if_else(_flag(builder)) as (fixed, blas):
            with fixed:
                one, zero = ir.Constant(ir.DoubleType(), 1.0), ir.Constant(ir.DoubleType(), 0.0)
                bad = builder.or_(builder.fcmp_ordered("!=", alpha, one), builder.and_(
                    builder.fcmp_ordered("!=", beta, zero), builder.fcmp_ordered("!=", beta, one)))
                with builder.if_then(builder.or_(bad, builder.and_(*flags)), likely=False):
                    context.call_conv.return_user_exc(builder, ValueError, (
                        "reproducible gemm: alpha = 1, beta 0 or 1, and not both operands transposed",))
                _rgemm_call(builder, dt, flags, ints, ptrs, beta)
            with blas:
                _blas_call(context, builder, dt, flags, ints, ptrs, alpha, beta)
        return context.get_dummy_value()
    return sig, codegen
