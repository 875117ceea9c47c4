import Testing
import TensorCore

/// Central finite differences, accumulated in Double, against the tape's gradients.
///
/// The scalar checked is Σ f(inputs) ⊙ R for a fixed random R, so every output element's
/// gradient path is exercised. Each input element is perturbed by ±eps.
public func checkGradients(
    _ inputs: [Tensor], eps: Float = 1e-2, atol: Double = 2e-3, rtol: Double = 2e-3,
    sourceLocation: SourceLocation = #_sourceLocation, _ f: () -> Tensor
) {
    for t in inputs { t.requiresGrad = true; t.grad = nil }
    let out = f()
    var rng = RandomGenerator(seed: 99)
    let weights = Tensor((0..<out.count).map { _ in rng.uniform() * 2 - 1 }, shape: out.shape)
    out.backward(seed: weights)
    func objective() -> Double {
        let y = GradMode.withoutGrad { f() }
        var s = 0.0
        for i in 0..<y.count { s += Double(y.pointer[i]) * Double(weights.pointer[i]) }
        return s
    }
    for (k, t) in inputs.enumerated() {
        let analytic = t.grad?.scalars ?? [Float](repeating: 0, count: t.count)
        var worst = 0.0, worstIndex = -1, worstPair = (0.0, 0.0)
        for i in 0..<t.count {
            let saved = t.pointer[i]
            t.pointer[i] = saved + eps
            let plus = objective()
            t.pointer[i] = saved - eps
            let minus = objective()
            t.pointer[i] = saved
            let numeric = (plus - minus) / (2 * Double(eps))
            let a = Double(analytic[i])
            let excess = abs(a - numeric) - (atol + rtol * abs(numeric))
            if excess > worst { worst = excess; worstIndex = i; worstPair = (a, numeric) }
        }
        #expect(worstIndex == -1,
                "input \(k) \(t.shape): element \(worstIndex) analytic \(worstPair.0) vs numeric \(worstPair.1)",
                sourceLocation: sourceLocation)
    }
}

public func randomTensor(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
    var rng = RandomGenerator(seed: seed)
    let n = shape.reduce(1, *)
    return Tensor((0..<n).map { _ in (rng.uniform() * 2 - 1) * scale }, shape: shape)
}

public func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "length \(a.count) vs \(b.count)")
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

/// Runs `body` with the compute thread count set to each of 1 and 2, for this test's task only:
/// tests running beside it keep their own count (and so their exact sums).
public func withThreadCounts(_ body: (Int) -> Void) {
    for t in [1, 2] { ComputeThreads.with(t) { body(t) } }
}
