#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Masked reconstruction losses (docs/methods/common.md#b10-masked-losses).
extension Tensor {
    /// Σ_r m_r · mean_p (pred − target)² / Σ_r m_r for pred and target (…, P), mask (…) of 0/1
    /// (or weights). The target is a constant.
    public static func maskedMSE(_ pred: Tensor, target: Tensor, mask: Tensor) -> Tensor {
        Profiler.measure(.loss, .forward) {
            precondition(pred.shape == target.shape, "maskedMSE: pred \(pred.shape) ≠ target \(target.shape)")
            let P = pred.dim(-1), rows = pred.count / max(P, 1)
            precondition(mask.count == rows, "maskedMSE: mask \(mask.shape) must have one value per row of \(pred.shape)")
            let x = pred.pointer, t = target.pointer, m = mask.pointer
            var maskSum = 0.0, total = 0.0
            for r in 0..<rows {
                maskSum += Double(m[r])
                guard m[r] != 0 else { continue }
                var s: Float = 0
                for j in 0..<P { let d = x[r * P + j] - t[r * P + j]; s += d * d }
                total += Double(m[r]) * Double(s) / Double(P)
            }
            precondition(maskSum > 0, "maskedMSE: the mask selects nothing")
            let out = Tensor(scalar: Float(total / maskSum))
            return out.recording("maskedMSE", .loss, [pred]) { g in
                _ = (target, mask)
                let k = g.item * 2 / (Float(P) * Float(maskSum))
                pred.accumulateGrad { dx, beta in
                    for r in 0..<rows {
                        let w = k * m[r]
                        for j in 0..<P {
                            let i = r * P + j, v = w * (x[i] - t[i])
                            dx[i] = beta == 0 ? v : dx[i] + v
                        }
                    }
                }
            }
        }
    }

    /// SimMIM's L1: Σ|pred − target|·m / (Σm / channels + 1e-5) / channels, where the mask has
    /// pred's shape (a per-pixel mask repeated over `channels`).
    public static func maskedL1(_ pred: Tensor, target: Tensor, mask: Tensor, channels: Int) -> Tensor {
        Profiler.measure(.loss, .forward) {
            precondition(pred.shape == target.shape && pred.shape == mask.shape,
                         "maskedL1: pred \(pred.shape), target \(target.shape), mask \(mask.shape) must agree")
            let x = pred.pointer, t = target.pointer, m = mask.pointer, n = pred.count
            var total = 0.0, maskSum = 0.0
            for i in 0..<n {
                total += Double(abs(x[i] - t[i]) * m[i])
                maskSum += Double(m[i])
            }
            let denominator = (maskSum / Double(channels) + 1e-5) * Double(channels)
            let out = Tensor(scalar: Float(total / denominator))
            return out.recording("maskedL1", .loss, [pred]) { g in
                _ = (target, mask)
                let k = g.item / Float(denominator)
                pred.accumulateGrad { dx, beta in
                    for i in 0..<n {
                        let d = x[i] - t[i]
                        let v = d > 0 ? k * m[i] : (d < 0 ? -k * m[i] : 0)
                        dx[i] = beta == 0 ? v : dx[i] + v
                    }
                }
            }
        }
    }
}

/// Classification loss for fine-tuning (docs/finetuning.md#loss).
extension Tensor {
    /// mean_b −Σ_c t_bc · log softmax(z_b)_c for logits z (B, C) and soft targets t (B·C values,
    /// each row summing to 1: one-hot, label-smoothed or mixed). The targets are constants.
    /// Gradient: (softmax(z) − t) / B.
    public static func softTargetCrossEntropy(_ logits: Tensor, targets: [Float]) -> Tensor {
        Profiler.measure(.loss, .forward) {
            precondition(logits.rank == 2, "softTargetCrossEntropy: logits must be (B, C), got \(logits.shape)")
            let (B, C) = (logits.shape[0], logits.shape[1])
            precondition(targets.count == B * C, "softTargetCrossEntropy: \(targets.count) targets for logits \(logits.shape)")
            let z = logits.pointer
            // Row-wise softmax kept for the backward pass; the loss summed in Double.
            var probabilities = [Float](repeating: 0, count: B * C)
            var total = 0.0
            for b in 0..<B {
                var mx = -Float.infinity
                for c in 0..<C { mx = max(mx, z[b * C + c]) }
                var sum = 0.0
                for c in 0..<C { sum += exp(Double(z[b * C + c] - mx)) }
                let logSum = Double(mx) + log(sum)
                for c in 0..<C {
                    let logP = Double(z[b * C + c]) - logSum
                    probabilities[b * C + c] = Float(exp(logP))
                    total -= Double(targets[b * C + c]) * logP
                }
            }
            let out = Tensor(scalar: Float(total / Double(B)))
            return out.recording("softTargetCrossEntropy", .loss, [logits]) { g in
                let k = g.item / Float(B)
                logits.accumulateGrad { dx, beta in
                    for i in 0..<(B * C) {
                        let v = k * (probabilities[i] - targets[i])
                        dx[i] = beta == 0 ? v : dx[i] + v
                    }
                }
            }
        }
    }
}
