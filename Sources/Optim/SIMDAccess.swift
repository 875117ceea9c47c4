#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif

/// Unaligned 8-lane loads and stores for the update and norm loops (TensorCore keeps its own
/// helpers internal).
@inline(__always)
func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always)
func load8(_ p: UnsafeMutablePointer<Float>) -> SIMD8<Float> { load8(UnsafePointer(p)) }

@inline(__always)
func store8(_ x: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: x, as: SIMD8<Float>.self)
}

/// Lane-wise square root, correctly rounded as the scalar one. `SIMD8.squareRoot()` lowers to
/// eight scalar `sqrtss` on x86-64 (the standard library's per-lane loop is not vectorised),
/// which made AdamW's update compute-bound; the intrinsic is one `vsqrtps` (two SSE `sqrtps`
/// on a build for any x86-64).
@inline(__always)
func sqrt8(_ x: SIMD8<Float>) -> SIMD8<Float> {
    #if arch(x86_64)
    _mm256_sqrt_ps(x)
    #else
    x.squareRoot()
    #endif
}
