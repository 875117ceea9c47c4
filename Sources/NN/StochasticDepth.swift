import Synchronization
import TensorCore

/// A block with residual branches that stochastic depth may drop (docs/finetuning.md#drop-path):
/// the ViT block, every Swin-style window block and ConvMAE's convolution block.
public protocol ResidualBlock: Module {
    /// The probability that a sample skips this block's branches while training; 0 by default.
    var dropPathRate: Float { get set }
}

/// Stochastic depth ("drop path"): while a forward pass runs inside `StochasticDepth.training`,
/// each residual branch of a block with rate r > 0 is kept per sample with probability 1 − r
/// and scaled by 1 / (1 − r), so its expectation is unchanged. Outside (evaluation, inference,
/// pretraining), branches always pass unchanged. The draws come from the generator given, in
/// the order the blocks run, so a resumed job draws exactly what an uninterrupted one would.
public final class StochasticDepth: Sendable {
    @TaskLocal static var current: StochasticDepth?

    private let generator: Mutex<RandomGenerator>

    private init(_ generator: RandomGenerator) { self.generator = Mutex(generator) }

    /// Runs `body` with drop path active, drawing from `rng` (which advances).
    public static func training<R>(rng: inout RandomGenerator, _ body: () throws -> R) rethrows -> R {
        let depth = StochasticDepth(rng)
        defer { rng = depth.generator.withLock { $0 } }
        return try $current.withValue(depth) { try body() }
    }

    /// Runs `body` drawing what the blocks drew when the generator was `state` (taken with
    /// `state()`), without advancing any generator: a recomputed block replays its draws.
    static func replaying<R>(_ state: RandomGenerator?, _ body: () -> R) -> R {
        $current.withValue(state.map(StochasticDepth.init)) { body() }
    }

    /// The active generator's state, or nil outside `training`.
    static func state() -> RandomGenerator? { current?.generator.withLock { $0 } }

    /// Per-sample scales for a batch of `batch`: 0 (dropped) or 1 / (1 − rate).
    func scales(batch: Int, rate: Float) -> [Float] {
        generator.withLock { g in (0..<batch).map { _ in g.uniform() < rate ? 0 : 1 / (1 - rate) } }
    }
}

extension Tensor {
    /// This residual branch (B, …) with drop path at `rate` (see `StochasticDepth`).
    public func droppingPath(rate: Float) -> Tensor {
        guard rate > 0, let depth = StochasticDepth.current else { return self }
        let scales = depth.scales(batch: shape[0], rate: rate)
        let shape = [self.shape[0]] + [Int](repeating: 1, count: rank - 1)
        return self * Tensor(scales, shape: shape)
    }
}

extension Tensor {
    /// self + branch(nil).droppingPath(rate: rate), a residual branch. Where no path is dropped
    /// (rate 0, or outside training), `branch(self)` adds self inside its last product instead
    /// (`Linear(_:adding:)`, `MLP(_:normalizedBy:adding:)`): the same values, bit for bit,
    /// without the branch's output as a tensor of its own that the sum would keep alive for the
    /// backward pass. MAE ViT-S's step at batch 16 kept 40 such tensors, 130 MB.
    public func plusBranch(droppingPath rate: Float, _ branch: (_ adding: Tensor?) -> Tensor) -> Tensor {
        if rate > 0, StochasticDepth.current != nil { return self + branch(nil).droppingPath(rate: rate) }
        return branch(self)
    }
}

/// Per-block recomputation (`"recompute": true`): inside `Recompute.blocks(true)`, a residual
/// block run through `recomputable` keeps only its input for the backward pass and computes its
/// insides again there, one block at a time, trading about one more forward pass for the
/// activations of every block but one (docs/architecture.md#memory).
public enum Recompute {
    @TaskLocal static var on = false

    /// Runs `body` (a forward pass) with its blocks recomputed when `on`.
    public static func blocks<R>(_ on: Bool, _ body: () throws -> R) rethrows -> R {
        try $on.withValue(on) { try body() }
    }
}

extension ResidualBlock {
    /// `body(x)`, this block's forward pass, recomputed in the backward pass inside
    /// `Recompute.blocks(true)`; drop path draws the same samples both times. `body` may read
    /// only its argument, this block's parameters and tensors that need no gradient.
    public func recomputable(_ x: Tensor, _ body: @escaping (Tensor) -> Tensor) -> Tensor {
        guard Recompute.on, GradMode.isEnabled else { return body(x) }
        let draws = StochasticDepth.state()
        return x.recomputed(parameters: parameters) { x, again in
            again ? StochasticDepth.replaying(draws) { body(x) } : body(x)
        }
    }
}
