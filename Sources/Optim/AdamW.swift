#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NN
import Synchronization
import TensorCore

/// AdamW with decoupled weight decay, step for step what `torch.optim.AdamW` (single-tensor
/// path) computes:
///
///     p ← p · (1 − lr·wd)                      (wd = 0 for no-decay parameters)
///     m ← m + (1 − β1)·(g − m)
///     v ← β2·v + (1 − β2)·g²
///     p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + eps)
///
/// Parameters fall into two groups fixed at init: decayed and not decayed (`noDecay`).
/// `step(lr:)` leaves gradients in place; call `zeroGrad()` (or the module's) before the next
/// backward pass.
///
/// Unlike torch, which counts steps per parameter, there is one step count: a parameter that
/// has no gradient on some step is skipped but still sees the shared count in its bias
/// correction later. Training loops here give every trainable parameter a gradient every step.
///
/// Like `Tensor`, an optimizer is used by one thread at a time; it may move between threads.
public final class AdamW: @unchecked Sendable {
    private struct Slot {
        let name: String
        let param: Tensor
        let decays: Bool
        /// The parameter's learning rate is `lr × lrScale` (layer-wise decay when fine-tuning).
        let lrScale: Float
        let expAvg: Tensor
        let expAvgSq: Tensor
    }

    public let weightDecay: Float
    public let betas: (Float, Float)
    public let eps: Float
    /// Completed `step` calls (t in the bias corrections of the last step).
    public private(set) var stepCount = 0
    /// Whether updates in bf16 keep each matrix parameter's bf16 copy (see `bf16Copy(of:)`).
    public var keepsBF16Copies = true

    /// Whether every parameter's gradient is written into a buffer of its own that lives as
    /// long as the optimizer, made when this is set (next to the moments), instead of into a
    /// new buffer each step (`Tensor.gradientBuffer`). Worth it only when a step's peak holds
    /// every gradient anyway: a recipe that clips, with blocks recomputed, so activations are
    /// small. The gradients then stay out of the heap the activations come and go in, which a
    /// step would otherwise leave full of holes between them (SimMIM Swin-B in bf16 at batch 8:
    /// peak RSS 1 742–1 760 → 1 696–1 715 MB). Without recomputation the peak is the end of the
    /// forward pass, when no gradient exists yet, and these buffers would only add to it.
    public var holdsGradientBuffers = false {
        didSet {
            guard holdsGradientBuffers != oldValue else { return }
            for slot in slots { slot.param.gradientBuffer = holdsGradientBuffers ? Tensor(uninitialized: slot.param.shape) : nil }
        }
    }

    private let slots: [Slot]
    /// Each parameter's slot, by the tensor's identity.
    private let slotIndex: [ObjectIdentifier: Int]

    /// The default no-decay rule (docs/methods/common.md#no-decay-rules): 1-D (and scalar)
    /// parameters and biases.
    /// Method-specific exclusions compose with it:
    /// `noDecay: { AdamW.defaultNoDecay($0, $1) || $0 == "cls_token" }`.
    public static func defaultNoDecay(_ name: String, _ tensor: Tensor) -> Bool {
        tensor.rank <= 1 || name.hasSuffix(".bias") || name == "bias"
    }

    /// - Parameters:
    ///   - parameters: trainable tensors under unique names (`Module.namedParameters()`).
    ///   - noDecay: true for parameters that get no weight decay.
    ///   - lrScale: each parameter's multiplier of the learning rate (and so of its decay step).
    public init(
        parameters: [(name: String, tensor: Tensor)],
        weightDecay: Float,
        betas: (Float, Float),
        eps: Float = 1e-8,
        noDecay: (String, Tensor) -> Bool = AdamW.defaultNoDecay,
        lrScale: (String) -> Float = { _ in 1 }
    ) {
        precondition(weightDecay >= 0, "weight decay must be ≥ 0, got \(weightDecay)")
        precondition((0..<1).contains(betas.0) && (0..<1).contains(betas.1),
                     "betas must lie in [0, 1), got \(betas)")
        precondition(eps >= 0, "eps must be ≥ 0, got \(eps)")
        var seen = Set<String>()
        for (name, _) in parameters {
            precondition(seen.insert(name).inserted, "duplicate parameter name '\(name)'")
        }
        self.weightDecay = weightDecay
        self.betas = betas
        self.eps = eps
        self.slots = parameters.map { name, tensor in
            Slot(name: name, param: tensor, decays: !noDecay(name, tensor), lrScale: lrScale(name),
                 expAvg: Tensor(zeros: tensor.shape), expAvgSq: Tensor(zeros: tensor.shape))
        }
        self.slotIndex = Dictionary(parameters.enumerated().map { (ObjectIdentifier($1.tensor), $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Parameter names in the order given at init.
    public var parameterNames: [String] { slots.map(\.name) }

    /// Names of the parameters that receive weight decay.
    public var decayedParameterNames: [String] { slots.filter(\.decays).map(\.name) }

    /// Names of the parameters that receive no weight decay.
    public var noDecayParameterNames: [String] { slots.filter { !$0.decays }.map(\.name) }

    /// One update of every parameter that has a gradient; parameters without one are skipped.
    public func step(lr: Float) { step(lr: lr, gradientScale: 1) }

    /// `step` on every gradient multiplied by `gradientScale` (a clipping factor), without
    /// changing the stored gradients.
    func step(lr: Float, gradientScale: Float) {
        Profiler.measure(.optimizer, .update) {
            let step = begin(lr: lr)
            for slot in slots { update(slot, step, gradientScale: gradientScale) }
        }
    }

    /// Zeroes the gradients, backpropagates `loss` and takes one step, leaving no gradients
    /// behind. Without clipping each parameter is updated the moment its gradient is complete
    /// and that gradient is dropped at once (`Tensor.backward(leafReady:)`), so the gradients
    /// of the whole model are never held together; the arithmetic is `step(lr:)`'s, value for
    /// value. Clipping by the global norm needs every gradient first, so with `clipGrad` the
    /// update follows the whole backward pass.
    ///
    /// Throws when a gradient holds a NaN or an infinity. Without clipping, parameters whose
    /// gradients were complete before that one was found have already been updated, and so
    /// may be parts of that parameter (the update checks each piece as it reads it, saving a
    /// pass over every gradient); a training run stops there and resumes from its last
    /// checkpoint.
    public func minimize(_ loss: Tensor, lr: Float, clipGrad: Float? = nil) throws(NonFiniteGradient) {
        zeroGrad()
        defer { zeroGrad() }
        if let clipGrad {
            // As clipGradNorm then step, with the clipping factor applied inside the update
            // instead of in a pass of its own over every gradient; a non-finite norm is a
            // non-finite gradient.
            loss.backward()
            let norm = Profiler.measure(.optimizer, .update) { gradientNorm(slots.map(\.param)) }
            guard norm.isFinite else { throw NonFiniteGradient() }
            step(lr: lr, gradientScale: min(1, clipCoefficient(norm: norm, maxNorm: clipGrad)))
            return
        }
        let step = Profiler.measure(.optimizer, .update) { begin(lr: lr) }
        var finite = true
        loss.backward { [self] leaf in
            guard let slot = slotIndex[ObjectIdentifier(leaf)].map({ slots[$0] }) else { return }
            Profiler.measure(.optimizer, .update) {
                if finite { finite = update(slot, step) }
                leaf.grad = nil
            }
        }
        guard finite else { throw NonFiniteGradient() }
    }

    /// A gradient held a NaN or an infinity (`minimize`).
    public struct NonFiniteGradient: Error {}

    /// The scalars of one step, shared by every parameter's update.
    private struct StepScalars {
        let lr: Double
        let biasCorrection1: Double
        let biasCorrection2Sqrt: Double
    }

    /// Counts a step and computes its scalars in Double, as torch does in Python floats.
    private func begin(lr: Float) -> StepScalars {
        stepCount += 1
        let t = Double(stepCount)
        return StepScalars(lr: Double(lr), biasCorrection1: 1 - pow(Double(betas.0), t),
                           biasCorrection2Sqrt: (1 - pow(Double(betas.1), t)).squareRoot())
    }

    /// Updates one parameter from its gradient, if it has one; false when that gradient held a
    /// NaN or an infinity (the pieces read by then are updated all the same).
    @discardableResult
    private func update(_ slot: Slot, _ step: StepScalars, gradientScale: Float = 1) -> Bool {
        guard let grad = slot.param.grad else { return true }
        precondition(grad.count == slot.param.count,
                     "gradient of '\(slot.name)' has shape \(grad.shape), parameter \(slot.param.shape)")
        let slotLR = step.lr * Double(slot.lrScale)
        let c = Coefficients(
            oneMinusBeta1: Float(1 - Double(betas.0)), beta2: betas.1, oneMinusBeta2: Float(1 - Double(betas.1)),
            negStepSize: Float(-slotLR / step.biasCorrection1),
            biasCorrection2Sqrt: Float(step.biasCorrection2Sqrt), eps: eps)
        let decay = slot.decays ? Float(1 - slotLR * Double(weightDecay)) : 1
        let p = slot.param.pointer, g = grad.pointer
        let m = slot.expAvg.pointer, v = slot.expAvgSq.pointer
        let copy = bf16Copy(of: slot.param)
        let nonFinite = Atomic<Bool>(false)
        parallelFor(slot.param.count, minPerThread: 1 << 15) { range in
            // In pieces that stay in cache from the update to their rounding.
            var lo = range.lowerBound
            while lo < range.upperBound {
                let n = min(1 << 14, range.upperBound - lo)
                if !adamWKernel(p + lo, g + lo, m + lo, v + lo, n, decay: decay, gradientScale: gradientScale, c) {
                    nonFinite.store(true, ordering: .relaxed)
                    return
                }
                copy?.round(from: p, range: lo..<(lo + n))
                lo += n
            }
        }
        return !nonFinite.load(ordering: .relaxed)
    }

    /// The bf16 copy an update refreshes: while GEMMs run in bf16 (a bf16 job's step), each
    /// matrix parameter keeps its values rounded to bf16 (`Tensor.bf16Copy`), written from the
    /// update's own pass, so the next forward and backward GEMMs read it instead of rounding
    /// the weight twice per step; an update in fp32 drops it. Off with `keepsBF16Copies`.
    private func bf16Copy(of param: Tensor) -> BF16Matrix? {
        guard keepsBF16Copies && BF16.isOn && param.rank == 2 else {
            param.bf16Copy = nil
            return nil
        }
        if let copy = param.bf16Copy { return copy }
        let copy = BF16Matrix(uninitializedRows: param.shape[0], cols: param.shape[1])
        param.bf16Copy = copy
        return copy
    }

    /// Drops every parameter's gradient.
    public func zeroGrad() {
        Profiler.measure(.optimizer, .update) {
            for slot in slots { slot.param.grad = nil }
        }
    }

    /// The moment buffers as `exp_avg.<name>` and `exp_avg_sq.<name>` (torch's state keys).
    /// These are the optimizer's own tensors, not copies; save them before the next step.
    public func state() -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for slot in slots {
            out["exp_avg." + slot.name] = slot.expAvg
            out["exp_avg_sq." + slot.name] = slot.expAvgSq
        }
        return out
    }

    /// Copies moment buffers from `state` (as written by `state()`) and sets the step count.
    /// Every buffer must be present with the parameter's shape and no other key may appear;
    /// nothing changes unless the whole state is valid.
    public func loadState(_ state: [String: Tensor], stepCount: Int) throws(StateError) {
        precondition(stepCount >= 0, "step count must be ≥ 0, got \(stepCount)")
        var expected = Set<String>()
        var copies: [(source: Tensor, destination: Tensor)] = []
        for slot in slots {
            for (key, buffer) in [("exp_avg." + slot.name, slot.expAvg),
                                  ("exp_avg_sq." + slot.name, slot.expAvgSq)] {
                expected.insert(key)
                guard let source = state[key] else { throw .missing(key) }
                guard source.shape == buffer.shape else {
                    throw .shapeMismatch(key, expected: buffer.shape, found: source.shape)
                }
                copies.append((source, buffer))
            }
        }
        if let extra = state.keys.sorted().first(where: { !expected.contains($0) }) {
            throw .unexpected(extra)
        }
        for (source, destination) in copies {
            destination.pointer.update(from: source.pointer, count: destination.count)
        }
        self.stepCount = stepCount
    }
}

/// The per-step scalars of the update, already in Float.
private struct Coefficients {
    let oneMinusBeta1: Float
    let beta2: Float
    let oneMinusBeta2: Float
    /// −lr / (1 − β1ᵗ)
    let negStepSize: Float
    /// √(1 − β2ᵗ)
    let biasCorrection2Sqrt: Float
    let eps: Float
}

/// `n` elements of the update, 8 lanes at a time, each gradient first multiplied by
/// `gradientScale` (1, or the clipping factor); returns false when a gradient was NaN or
/// infinite (x − x is 0 for finite x, NaN otherwise, and NaN survives the sum). Operation
/// order follows torch's kernels (lerp, mul + addcmul, sqrt / bc2 + eps, addcdiv) so results
/// agree to rounding.
/// The square root is `sqrt8` (one vector instruction): with the standard library's lane-wise
/// one, eight scalar roots per eight elements made the loop compute-bound (ViT-B's update took
/// 194–201 ms per step, against 120–136 ms now).
@inline(__always)
private func adamWKernel(
    _ p: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>,
    _ m: UnsafeMutablePointer<Float>, _ v: UnsafeMutablePointer<Float>,
    _ n: Int, decay: Float, gradientScale: Float, _ c: Coefficients
) -> Bool {
    var check = SIMD8<Float>(repeating: 0), tail: Float = 0
    var i = 0
    while i + 8 <= n {
        let raw = load8(g + i)
        check += raw - raw
        let gi = raw * gradientScale
        let mi = load8(m + i) + c.oneMinusBeta1 * (gi - load8(m + i))
        let vi = load8(v + i) * c.beta2 + c.oneMinusBeta2 * gi * gi
        let denom = sqrt8(vi) / c.biasCorrection2Sqrt + c.eps
        let pi = load8(p + i) * decay + c.negStepSize * mi / denom
        store8(mi, m + i)
        store8(vi, v + i)
        store8(pi, p + i)
        i += 8
    }
    while i < n {
        tail += g[i] - g[i]
        let gi = g[i] * gradientScale
        let mi = m[i] + c.oneMinusBeta1 * (gi - m[i])
        let vi = v[i] * c.beta2 + c.oneMinusBeta2 * gi * gi
        let denom = vi.squareRoot() / c.biasCorrection2Sqrt + c.eps
        m[i] = mi
        v[i] = vi
        p[i] = p[i] * decay + c.negStepSize * mi / denom
        i += 1
    }
    return check.sum() + tail == 0
}
