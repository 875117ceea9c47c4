import CDNNL
import Foundation
import NN
import Optim
import Testing
import TestSupport
@testable import TensorCore

// MARK: - Helpers

private func loadFixture() throws -> Fixture {
    let url = try #require(Bundle.module.url(forResource: "adamw", withExtension: "bin", subdirectory: "Fixtures"))
    return try Fixture(contentsOf: url)
}

private func tensor(_ f: FixtureTensor) -> Tensor { Tensor(f.values, shape: f.shape) }

/// max |a − b| / max(1, |b|): absolute for values up to 1, relative above.
private func maxScaledDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "\(a.count) vs \(b.count) values")
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1) / max(1, abs($1.1))) }
}

private func norm(_ values: [Float]) -> Float {
    Float(values.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot())
}

/// Deterministic pseudo-random values in [-scale, scale).
private func pseudoRandom(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var state = seed &* 6364136223846793005 &+ 1442695040888963407
    return (0..<n).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
    }
}

// MARK: - Golden replay against torch

@Test func adamWMatchesTorchReference() throws {
    let fixture = try loadFixture()
    func config(_ key: String) throws -> Float { try fixture.tensor("config." + key).scalar }

    let schedule = WarmupCosineSchedule(
        baseLR: try config("base_lr"), minLR: try config("min_lr"),
        warmupSteps: Int(try config("warmup_steps")), totalSteps: Int(try config("total_steps")),
        warmupStartLR: try config("warmup_start_lr"))
    let maxNorm = try config("max_norm")
    let steps = Int(try config("steps"))

    let named = fixture.tensors.filter { $0.name.hasPrefix("initial.") }.map {
        (name: String($0.name.dropFirst("initial.".count)), tensor: tensor($0))
    }
    try #require(named.count == 3)
    let params = named.map(\.tensor)
    let optimizer = AdamW(parameters: named, weightDecay: try config("weight_decay"),
                          betas: (try config("beta1"), try config("beta2")), eps: try config("eps"))
    // The script's param groups: decay for the 2-D and 3-D tensors, none for the bias.
    #expect(optimizer.noDecayParameterNames == ["proj.bias"])

    let tolerance: Float = 1e-6
    for k in 0..<steps {
        let lr = schedule.lr(step: k)
        let referenceLR = try fixture.tensor("step\(k).lr").scalar
        #expect(abs(lr - referenceLR) <= 1e-6 * abs(referenceLR), "step \(k): lr \(lr), torch \(referenceLR)")

        for (name, p) in named { p.grad = tensor(try fixture.tensor("step\(k).grad.\(name)")) }
        let gradNorm = clipGradNorm(params, maxNorm: maxNorm)
        let referenceNorm = try fixture.tensor("step\(k).grad_norm").scalar
        #expect(abs(gradNorm - referenceNorm) <= 1e-6 * referenceNorm,
                "step \(k): grad norm \(gradNorm), torch \(referenceNorm)")

        optimizer.step(lr: lr)
        for (name, p) in named {
            let key = "step\(k).param.\(name)"
            let diff = maxScaledDifference(p.scalars, try fixture.tensor(key).values)
            #expect(diff < tolerance, "\(key): max difference \(diff)")
        }
        optimizer.zeroGrad()
    }

    #expect(optimizer.stepCount == steps)
    let state = optimizer.state()
    for (name, _) in named {
        for moment in ["exp_avg", "exp_avg_sq"] {
            let key = "\(moment).\(name)"
            let ours = try #require(state[key], "state has no '\(key)'")
            let diff = maxScaledDifference(ours.scalars, try fixture.tensor("final." + key).values)
            #expect(diff < tolerance, "final.\(key): max difference \(diff)")
        }
    }
}

// MARK: - AdamW

@Test func defaultNoDecayGroupsByRankAndName() {
    let params: [(name: String, tensor: Tensor)] = [
        ("blocks.0.attn.qkv.weight", Tensor(zeros: [6, 4])),
        ("blocks.0.attn.qkv.bias", Tensor(zeros: [6])),
        ("norm.weight", Tensor(zeros: [4])),
        ("cls_token", Tensor(zeros: [1, 1, 4])),
        ("logit_scale", Tensor(zeros: [])),
        ("rel_pos.bias_table", Tensor(zeros: [5, 2])),  // "bias" inside a name is not a bias
        ("odd.bias", Tensor(zeros: [2, 2])),  // a bias of any rank
    ]
    let optimizer = AdamW(parameters: params, weightDecay: 0.05, betas: (0.9, 0.95))
    #expect(optimizer.decayedParameterNames == ["blocks.0.attn.qkv.weight", "cls_token", "rel_pos.bias_table"])
    #expect(optimizer.noDecayParameterNames == ["blocks.0.attn.qkv.bias", "norm.weight", "logit_scale", "odd.bias"])

    let custom = AdamW(parameters: params, weightDecay: 0.05, betas: (0.9, 0.95),
                       noDecay: { AdamW.defaultNoDecay($0, $1) || $0 == "cls_token" })
    #expect(custom.decayedParameterNames == ["blocks.0.attn.qkv.weight", "rel_pos.bias_table"])
}

@Test func weightDecayIsDecoupledAndGrouped() {
    // A zero gradient leaves only the decay term: p ← p·(1 − lr·wd) for decayed tensors.
    let weight = Tensor([1, -2, 3, 4], shape: [2, 2]), bias = Tensor([1, -2], shape: [2])
    weight.grad = Tensor(zeros: [2, 2])
    bias.grad = Tensor(zeros: [2])
    let optimizer = AdamW(parameters: [("w", weight), ("b", bias)], weightDecay: 0.5, betas: (0.9, 0.999))
    optimizer.step(lr: 0.1)
    #expect(weight.scalars == [1, -2, 3, 4].map { $0 * Float(1 - 0.1 * 0.5) })
    #expect(bias.scalars == [1, -2])
}

@Test func stepSkipsParametersWithoutGradientAndKeepsGradients() {
    let a = Tensor([1, 2], shape: [2]), b = Tensor([3, 4], shape: [2])
    a.grad = Tensor([0.5, -0.5], shape: [2])
    let optimizer = AdamW(parameters: [("a", a), ("b", b)], weightDecay: 0, betas: (0.9, 0.999))
    optimizer.step(lr: 0.1)
    #expect(b.scalars == [3, 4])
    // First step of Adam moves each element by lr·sign(g) (up to eps).
    #expect(abs(a.scalars[0] - 0.9) < 1e-6 && abs(a.scalars[1] - 2.1) < 1e-6)
    #expect(a.grad?.scalars == [0.5, -0.5])
    optimizer.zeroGrad()
    #expect(a.grad == nil)
}

/// The naive twin of the SIMD kernel: the update of one tensor over `steps`, in Double.
private func naiveAdamW(_ p0: [Float], grads: [[Float]], lrs: [Float], wd: Double,
                        betas: (Double, Double), eps: Double) -> [Float] {
    var p = p0.map(Double.init), m = [Double](repeating: 0, count: p0.count), v = m
    for (t, (g, lr)) in zip(grads, lrs).enumerated() {
        let lr = Double(lr)
        let bc1 = 1 - pow(betas.0, Double(t + 1)), bc2 = 1 - pow(betas.1, Double(t + 1))
        for i in p.indices {
            let gi = Double(g[i])
            p[i] *= 1 - lr * wd
            m[i] = betas.0 * m[i] + (1 - betas.0) * gi
            v[i] = betas.1 * v[i] + (1 - betas.1) * gi * gi
            p[i] -= lr / bc1 * m[i] / ((v[i] / bc2).squareRoot() + eps)
        }
    }
    return p.map(Float.init)
}

@Test func largeTensorMatchesNaiveUpdate() {
    // Large enough to be split across threads, with a ragged tail after the 8-lane loop.
    let n = 10_001 * 7
    let initial = pseudoRandom(n, seed: 1)
    let grads = (0..<4).map { pseudoRandom(n, seed: 10 + UInt64($0), scale: 0.1) }
    let lrs: [Float] = [1e-3, 2e-3, 3e-3, 1e-3]
    let p = Tensor(initial, shape: [10_001, 7])
    let optimizer = AdamW(parameters: [("w", p)], weightDecay: 0.05, betas: (0.9, 0.95), eps: 1e-8)
    for (g, lr) in zip(grads, lrs) {
        p.grad = Tensor(g, shape: p.shape)
        optimizer.step(lr: lr)
    }
    let expected = naiveAdamW(initial, grads: grads, lrs: lrs, wd: 0.05, betas: (0.9, 0.95), eps: 1e-8)
    let diff = maxScaledDifference(p.scalars, expected)
    #expect(diff < 1e-6, "max difference to the naive update \(diff)")
}

@Test func stateRoundTripContinuesIdentically() throws {
    func makeParams() -> [(name: String, tensor: Tensor)] {
        [("w", Tensor(pseudoRandom(35, seed: 3), shape: [5, 7])),
         ("b", Tensor(pseudoRandom(7, seed: 4), shape: [7]))]
    }
    func setGrads(_ params: [(name: String, tensor: Tensor)], step: Int) {
        for (i, (_, t)) in params.enumerated() {
            t.grad = Tensor(pseudoRandom(t.count, seed: UInt64(100 * step + i), scale: 0.3), shape: t.shape)
        }
    }
    let original = makeParams()
    let first = AdamW(parameters: original, weightDecay: 0.05, betas: (0.9, 0.95))
    for step in 0..<3 {
        setGrads(original, step: step)
        first.step(lr: 1e-2)
    }

    // A fresh optimizer on copies of the parameters, resumed from the exported state.
    let resumed = original.map { (name: $0.name, tensor: $0.tensor.copy()) }
    let second = AdamW(parameters: resumed, weightDecay: 0.05, betas: (0.9, 0.95))
    let exported = first.state()
    #expect(Set(exported.keys) == ["exp_avg.w", "exp_avg_sq.w", "exp_avg.b", "exp_avg_sq.b"])
    try second.loadState(exported, stepCount: first.stepCount)
    #expect(second.stepCount == 3)

    for step in 3..<5 {
        setGrads(original, step: step)
        setGrads(resumed, step: step)
        first.step(lr: 5e-3)
        second.step(lr: 5e-3)
    }
    for (a, b) in zip(original, resumed) {
        #expect(a.tensor.scalars == b.tensor.scalars, "\(a.name) differs after resuming")
    }
}

@Test func loadStateRejectsMissingMisshapedAndExtraEntries() throws {
    let optimizer = AdamW(parameters: [("w", Tensor(zeros: [2, 3])), ("b", Tensor(zeros: [3]))],
                          weightDecay: 0.05, betas: (0.9, 0.95))
    let good = optimizer.state().mapValues { Tensor(repeating: 7, shape: $0.shape) }

    var missing = good
    missing["exp_avg_sq.w"] = nil
    #expect(throws: StateError.missing("exp_avg_sq.w")) { try optimizer.loadState(missing, stepCount: 1) }

    var misshaped = good
    misshaped["exp_avg.b"] = Tensor(zeros: [4])
    #expect(throws: StateError.shapeMismatch("exp_avg.b", expected: [3], found: [4])) {
        try optimizer.loadState(misshaped, stepCount: 1)
    }

    var extra = good
    extra["exp_avg.gone"] = Tensor(zeros: [1])
    #expect(throws: StateError.unexpected("exp_avg.gone")) { try optimizer.loadState(extra, stepCount: 1) }

    // Failed loads change nothing.
    #expect(optimizer.stepCount == 0)
    #expect(optimizer.state().values.allSatisfy { $0.scalars.allSatisfy { $0 == 0 } })

    try optimizer.loadState(good, stepCount: 4)
    #expect(optimizer.stepCount == 4)
    #expect(optimizer.state().values.allSatisfy { $0.scalars.allSatisfy { $0 == 7 } })
}

// MARK: - Schedule

@Test func scheduleEndpointsAndShape() {
    let s = WarmupCosineSchedule(baseLR: 1e-2, minLR: 1e-4, warmupSteps: 10, totalSteps: 110, warmupStartLR: 1e-5)
    #expect(s.lr(step: 0) == 1e-5)
    #expect(s.lr(step: 10) == 1e-2)
    #expect(abs(s.lr(step: 60) - (1e-2 + 1e-4) / 2) < 1e-9)  // halfway down the cosine
    #expect(s.lr(step: 110) == 1e-4)
    #expect(s.lr(step: 500) == 1e-4)
    #expect(s.lr(step: -3) == 1e-5)
    let warmup = (0...10).map { s.lr(step: $0) }
    #expect(zip(warmup, warmup.dropFirst()).allSatisfy { $0 < $1 }, "warmup not increasing: \(warmup)")
    let decay = (10...110).map { s.lr(step: $0) }
    #expect(zip(decay, decay.dropFirst()).allSatisfy { $0 > $1 }, "cosine not decreasing: \(decay)")
}

@Test func scheduleWithoutWarmupStartsAtBase() {
    let s = WarmupCosineSchedule(baseLR: 3e-3, warmupSteps: 0, totalSteps: 4)
    #expect(s.lr(step: 0) == 3e-3)
    #expect(s.lr(step: 4) == 0)
    let s2 = WarmupCosineSchedule(baseLR: 3e-3, warmupSteps: 2, totalSteps: 2)
    #expect(s2.lr(step: 0) == 0 && s2.lr(step: 1) == 1.5e-3 && s2.lr(step: 2) == 0)
}

@Test func scheduleCodableRoundTrip() throws {
    let s = WarmupCosineSchedule(baseLR: 2.4e-3, minLR: 1e-6, warmupSteps: 40, totalSteps: 800)
    let decoded = try JSONDecoder().decode(WarmupCosineSchedule.self, from: JSONEncoder().encode(s))
    #expect(decoded == s)
}

@Test func linearScalingRule() {
    // MAE's recipe (docs/methods/mae.md#recipe): blr 1.5e-4 at batch 4096 gives lr 2.4e-3.
    #expect(abs(WarmupCosineSchedule.scaledLR(blr: 1.5e-4, batch: 4096) - 2.4e-3) < 1e-9)
    #expect(WarmupCosineSchedule.scaledLR(blr: 1e-3, batch: 64, divisor: 512) == 1.25e-4)
}

// MARK: - Clipping

@Test func clippingLeavesSmallGradientsUnchanged() {
    let a = Tensor(zeros: [2]), b = Tensor(zeros: [1]), noGrad = Tensor(zeros: [3])
    a.grad = Tensor([0.3, 0], shape: [2])
    b.grad = Tensor([0.4], shape: [1])
    let norm = clipGradNorm([a, b, noGrad], maxNorm: 1)
    #expect(abs(norm - 0.5) < 1e-7)
    #expect(a.grad?.scalars == [0.3, 0] && b.grad?.scalars == [0.4])
    #expect(noGrad.grad == nil)
}

@Test func clippingScalesLargeGradientsToMaxNorm() {
    // Norm 13 over two tensors, one past the 8-lane loop.
    let a = Tensor(zeros: [9]), b = Tensor(zeros: [1])
    a.grad = Tensor([3, 0, 0, 0, 0, 0, 0, 0, 4], shape: [9])
    b.grad = Tensor([12], shape: [1])
    let preClipNorm = clipGradNorm([a, b], maxNorm: 2)
    #expect(abs(preClipNorm - 13) < 1e-5)
    let clipped = a.grad!.scalars + b.grad!.scalars
    #expect(abs(norm(clipped) - 2) < 1e-5, "norm after clipping \(norm(clipped))")
    let scale = Float(2 / (13 + 1e-6))
    #expect(zip(clipped, [3, 0, 0, 0, 0, 0, 0, 0, 4, 12]).allSatisfy { abs($0 - $1 * scale) < 1e-6 })
}

@Test func finiteCheckFindsNaNAndInfinity() {
    for bad: Float in [.nan, .infinity, -.infinity] {
        for position in [0, 8, 10] {  // in the 8-lane loop and in the tail
            let t = Tensor(zeros: [11])
            var g = [Float](repeating: 1, count: 11)
            g[position] = bad
            t.grad = Tensor(g, shape: [11])
            #expect(!gradientsAreFinite([Tensor(zeros: [1]), t]), "missed \(bad) at \(position)")
        }
    }
    let fine = Tensor(zeros: [3])
    fine.grad = Tensor([1, -1e30, 3e38], shape: [3])
    #expect(gradientsAreFinite([fine, Tensor(zeros: [2])]))
}

/// Layer-wise decay's per-parameter rate: a parameter with `lrScale` s steps exactly as an
/// optimizer of its own at lr × s (s a power of two, so both products are exact), its weight
/// decay included; the other parameter is untouched by the scale.
@Test func lrScaleActsAsThatParametersOwnLearningRate() {
    func params() -> (Tensor, Tensor) {
        (Tensor(pseudoRandom(6, seed: 1), shape: [2, 3]), Tensor(pseudoRandom(6, seed: 2), shape: [2, 3]))
    }
    let (a, b) = params(), (a2, b2) = params()
    let scaled = AdamW(parameters: [("a", a), ("b", b)], weightDecay: 0.05, betas: (0.9, 0.999),
                       lrScale: { $0 == "a" ? 0.25 : 1 })
    let aloneA = AdamW(parameters: [("a", a2)], weightDecay: 0.05, betas: (0.9, 0.999))
    let aloneB = AdamW(parameters: [("b", b2)], weightDecay: 0.05, betas: (0.9, 0.999))
    for step in 0..<5 {
        for (t, seed) in [(a, 10), (b, 20), (a2, 10), (b2, 20)] {
            t.grad = Tensor(pseudoRandom(6, seed: UInt64(seed + step)), shape: [2, 3])
        }
        scaled.step(lr: 0.01)
        aloneA.step(lr: 0.0025)
        aloneB.step(lr: 0.01)
    }
    #expect(a.scalars == a2.scalars && b.scalars == b2.scalars)
    #expect(a.scalars != params().0.scalars)
}

// MARK: - minimize: the update inside the backward pass

/// A small network whose first weight is used twice (in the first layer and in a penalty
/// read late in the backward walk), so an early update of it would change what comes after.
private struct TwoLayerNet {
    let w1 = Tensor(pseudoRandom(12 * 8, seed: 1, scale: 0.3), shape: [12, 8])
    let b1 = Tensor(pseudoRandom(12, seed: 2, scale: 0.1), shape: [12])
    let gamma = Tensor(pseudoRandom(12, seed: 3, scale: 0.2).map { 1 + $0 }, shape: [12])
    let w2 = Tensor(pseudoRandom(4 * 12, seed: 4, scale: 0.3), shape: [4, 12])
    let input = Tensor(pseudoRandom(6 * 8, seed: 5), shape: [6, 8])

    init() { for p in parameters { p.requiresGrad = true } }

    var parameters: [Tensor] { [w1, b1, gamma, w2] }
    var named: [(name: String, tensor: Tensor)] { zip(["w1", "b1", "norm.weight", "w2"], parameters).map { ($0, $1) } }

    func loss() -> Tensor {
        let h = input.linear(weight: w1, bias: b1).layerNorm(weight: gamma, bias: nil, eps: 1e-5).gelu()
        let y = h.linear(weight: w2)
        return (y * y).mean() + (w1 * w1).sum() * 0.01
    }
}

@Test(arguments: [nil, Float(0.05)])
func minimizeUpdatesExactlyAsBackwardThenStepAndLeavesNoGradients(clip: Float?) throws {
    let fused = TwoLayerNet(), reference = TwoLayerNet()
    let a = AdamW(parameters: fused.named, weightDecay: 0.05, betas: (0.9, 0.95))
    let b = AdamW(parameters: reference.named, weightDecay: 0.05, betas: (0.9, 0.95))
    for step in 0..<5 {
        let lr = Float(step + 1) * 1e-2
        try a.minimize(fused.loss(), lr: lr, clipGrad: clip)
        b.zeroGrad()
        reference.loss().backward()
        if let clip { clipGradNorm(reference.parameters, maxNorm: clip) }
        b.step(lr: lr)
        #expect(fused.parameters.allSatisfy { $0.grad == nil })
    }
    // Value for value: the same kernel on the same gradients, only at another time.
    for (x, y) in zip(fused.parameters, reference.parameters) { #expect(x.scalars == y.scalars) }
    let stateA = a.state(), stateB = b.state()
    for (key, value) in stateB { #expect(stateA[key]?.scalars == value.scalars, "\(key)") }
    #expect(a.stepCount == 5)
    // The parameters did move.
    #expect(fused.w1.scalars != TwoLayerNet().w1.scalars)
}

/// Two identical nets, each with an AdamW that `configure` may set apart, trained by
/// `minimize` for the same five steps (GEMMs in bf16 or not).
private func twinRuns(clip: Float?, bf16: Bool, _ configure: (AdamW, AdamW) -> Void) throws
    -> (TwoLayerNet, AdamW, TwoLayerNet, AdamW) {
    let first = TwoLayerNet(), second = TwoLayerNet()
    let a = AdamW(parameters: first.named, weightDecay: 0.05, betas: (0.9, 0.95))
    let b = AdamW(parameters: second.named, weightDecay: 0.05, betas: (0.9, 0.95))
    configure(a, b)
    for step in 0..<5 {
        let lr = Float(step + 1) * 1e-2
        try BF16.gemms(bf16) { try a.minimize(first.loss(), lr: lr, clipGrad: clip) }
        try BF16.gemms(bf16) { try b.minimize(second.loss(), lr: lr, clipGrad: clip) }
    }
    return (first, a, second, b)
}

/// Gradients written into buffers that live with the optimizer (`holdsGradientBuffers`) give
/// the run without them, bit for bit, with and without clipping (the buffer is overwritten,
/// never added to, at each step's first gradient); the gradients are those buffers; and
/// turning it off lets them go.
@Test(arguments: [nil, Float(0.05)])
func gradientBuffersChangeNothingButWhereGradientsLive(clip: Float?) throws {
    let (held, a, fresh, _) = try twinRuns(clip: clip, bf16: false) { a, _ in a.holdsGradientBuffers = true }
    #expect(held.parameters.allSatisfy { $0.grad == nil })
    for (x, y) in zip(held.parameters, fresh.parameters) { #expect(x.scalars == y.scalars) }
    held.loss().backward()
    for p in held.parameters {
        let buffer = try #require(p.gradientBuffer)
        #expect(p.grad?.pointer == buffer.pointer)
    }
    a.zeroGrad()
    a.holdsGradientBuffers = false
    #expect(held.parameters.allSatisfy { $0.gradientBuffer == nil } && fresh.parameters.allSatisfy { $0.gradientBuffer == nil })
}

/// In bf16, each update keeps the weights' bf16 rounding (`Tensor.bf16Copy`) and `linear`
/// reads it instead of rounding again: the run must be the one without copies, bit for bit;
/// the copies must hold the current weights' rounding; and `linear` must really read them.
@Test(.enabled(if: BF16.available, "this CPU has no AVX512_BF16 or AMX (MIMSERVE_BF16_EMULATE=1 emulates them on AVX-512)"), arguments: [nil, Float(0.05)])
func bf16WeightCopiesChangeNothingButWhereTheRoundingIsDone(clip: Float?) throws {
    let (kept, a, fresh, _) = try twinRuns(clip: clip, bf16: true) { _, b in b.keepsBF16Copies = false }
    for (x, y) in zip(kept.parameters, fresh.parameters) { #expect(x.scalars == y.scalars) }
    #expect(fresh.w1.bf16Copy == nil && kept.b1.bf16Copy == nil)
    for w in [kept.w1, kept.w2] {
        let copy = try #require(w.bf16Copy), rounded = w.copy()
        mims_round_to_bf16(rounded.pointer, rounded.count)
        let held = (0..<w.count).map { Float(bitPattern: UInt32(copy.pointer[$0]) << 16) }
        #expect(held == rounded.scalars)
    }
    // A copy of zeros makes the layer output its bias alone: the copy is what the GEMM reads.
    let zeros = Tensor(zeros: kept.w1.shape)
    kept.w1.bf16Copy!.round(from: zeros.pointer, range: 0..<zeros.count)
    let y = GradMode.withoutGrad { BF16.gemms(true) { kept.input.linear(weight: kept.w1, bias: kept.b1) } }
    for r in 0..<y.shape[0] { #expect(Array(y.scalars[(r * 12)..<((r + 1) * 12)]) == kept.b1.scalars) }
    // An update in fp32 drops the copies.
    try a.minimize(kept.loss(), lr: 1e-2, clipGrad: clip)
    #expect(kept.w1.bf16Copy == nil && kept.w2.bf16Copy == nil)
}

/// The update checks each piece of a gradient as it reads it: one NaN or infinity anywhere in a
/// parameter split across threads and pieces (the first element, inside a later piece, the
/// last, beyond the 8-lane loop) is found, on one thread or two.
@Test(arguments: [(0, Float.nan), (40_001, Float.infinity), (69_999, -Float.infinity), (69_999, Float.nan)])
func minimizeFindsANonFiniteGradientAnywhere(position: Int, value: Float) {
    withThreadCounts { _ in
        let w = Tensor(zeros: [70_000])
        w.requiresGrad = true
        let weights = Tensor((0..<70_000).map { $0 == position ? value : Float($0 % 5) }, shape: [70_000])
        let optimizer = AdamW(parameters: [("w", w)], weightDecay: 0, betas: (0.9, 0.999))
        #expect(throws: AdamW.NonFiniteGradient.self) { try optimizer.minimize((w * weights).sum(), lr: 0.1) }
        // The same gradient without the bad value passes.
        weights.pointer[position] = 1
        #expect(throws: Never.self) { try optimizer.minimize((w * weights).sum(), lr: 0.1) }
    }
}

@Test func minimizeRefusesANonFiniteGradient() {
    let net = TwoLayerNet()
    let optimizer = AdamW(parameters: net.named, weightDecay: 0, betas: (0.9, 0.999))
    let loss = net.loss() * Float.infinity
    #expect(throws: AdamW.NonFiniteGradient.self) { try optimizer.minimize(loss, lr: 0.1) }
    #expect(net.parameters.allSatisfy { $0.grad == nil })
}
