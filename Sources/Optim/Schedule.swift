#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Linear warmup then half-cosine decay, evaluated per iteration
/// (docs/methods/common.md#warmup-and-cosine-schedule), with steps in place of fractional
/// epochs: `warmupSteps = warmupEpochs · stepsPerEpoch`.
///
///     step < warmup:          warmupStart + (base − warmupStart) · step / warmup
///     warmup ≤ step < total:  min + (base − min) · ½(1 + cos(π (step − warmup) / (total − warmup)))
///     step ≥ total:           min
public struct WarmupCosineSchedule: Sendable, Codable, Equatable {
    public var baseLR: Float
    public var minLR: Float
    public var warmupSteps: Int
    public var totalSteps: Int
    public var warmupStartLR: Float

    public init(baseLR: Float, minLR: Float = 0, warmupSteps: Int, totalSteps: Int,
                warmupStartLR: Float = 0) {
        precondition(warmupSteps >= 0 && totalSteps >= warmupSteps,
                     "need 0 ≤ warmupSteps ≤ totalSteps, got \(warmupSteps) and \(totalSteps)")
        self.baseLR = baseLR
        self.minLR = minLR
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.warmupStartLR = warmupStartLR
    }

    /// The learning rate for the iteration `step` (0-based); negative steps count as 0.
    public func lr(step: Int) -> Float {
        let step = max(step, 0)
        if step < warmupSteps {
            let fraction = Double(step) / Double(warmupSteps)
            return Float(Double(warmupStartLR) + (Double(baseLR) - Double(warmupStartLR)) * fraction)
        }
        if step >= totalSteps { return minLR }
        let progress = Double(step - warmupSteps) / Double(totalSteps - warmupSteps)
        return Float(Double(minLR) + (Double(baseLR) - Double(minLR)) * 0.5 * (1 + cos(Double.pi * progress)))
    }

    /// The linear scaling rule: base lr = blr · batch / divisor (divisor 256 in MAE and SimMIM).
    public static func scaledLR(blr: Float, batch: Int, divisor: Int = 256) -> Float {
        precondition(batch > 0 && divisor > 0, "batch and divisor must be positive, got \(batch), \(divisor)")
        return Float(Double(blr) * Double(batch) / Double(divisor))
    }
}
