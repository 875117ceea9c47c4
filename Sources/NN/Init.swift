import TensorCore

/// Parameter initialisers (docs/methods/common.md#b12-initialisation). All draw from the
/// caller's seeded generator.
public enum Init {
    /// Xavier/Glorot uniform: U(−a, a), a = √(6 / (fanIn + fanOut)).
    public static func xavierUniform(_ shape: [Int], fanIn: Int, fanOut: Int, rng: inout RandomGenerator) -> Tensor {
        let a = (6 / Float(fanIn + fanOut)).squareRoot()
        return uniform(shape, low: -a, high: a, rng: &rng)
    }

    /// Xavier-uniform for a (out, in, …) weight: fanIn = in·∏kernel, fanOut = out·∏kernel.
    public static func xavierUniform(_ shape: [Int], rng: inout RandomGenerator) -> Tensor {
        let receptive = shape.dropFirst(2).reduce(1, *)
        return xavierUniform(shape, fanIn: shape[1] * receptive, fanOut: shape[0] * receptive, rng: &rng)
    }

    /// Re-draws `weight` in place, Xavier-uniform: for methods whose reference re-initialises a
    /// layer after building it, so the seeded draws follow the reference's order.
    public static func redrawXavier(_ weight: Tensor, rng: inout RandomGenerator) {
        // The draw must outlive the copy: Swift may release a value right after its last use
        // (here, reading `.pointer`), and its buffer could then be handed to another thread.
        let draw = xavierUniform(weight.shape, rng: &rng)
        withExtendedLifetime(draw) { weight.pointer.update(from: draw.pointer, count: weight.count) }
    }

    /// `redrawXavier` on every Linear weight under `module`, in tree order; biases are left alone.
    public static func redrawXavierLinears(in module: Module, rng: inout RandomGenerator) {
        if let linear = module as? Linear { redrawXavier(linear.weight, rng: &rng) }
        for (_, child) in module.children { redrawXavierLinears(in: child, rng: &rng) }
    }

    public static func uniform(_ shape: [Int], low: Float, high: Float, rng: inout RandomGenerator) -> Tensor {
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t.pointer[i] = low + (high - low) * rng.uniform() }
        return t
    }

    public static func normal(_ shape: [Int], std: Float, rng: inout RandomGenerator) -> Tensor {
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t.pointer[i] = rng.normal() * std }
        return t
    }

    /// Normal(0, std²) redrawn until inside [low, high] (timm's trunc_normal_ uses absolute
    /// bounds ±2, so at std 0.02 it is effectively untruncated).
    public static func truncatedNormal(_ shape: [Int], std: Float, low: Float = -2, high: Float = 2,
                                       rng: inout RandomGenerator) -> Tensor {
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count {
            var v: Float
            repeat { v = rng.normal() * std } while v < low || v > high
            t.pointer[i] = v
        }
        return t
    }

    /// PyTorch's default for Linear/Conv weights: U(±1/√fanIn) (kaiming_uniform with a = √5).
    public static func pytorchDefault(_ shape: [Int], rng: inout RandomGenerator) -> Tensor {
        let fanIn = shape.dropFirst().reduce(1, *)
        let bound = 1 / Float(max(fanIn, 1)).squareRoot()
        return uniform(shape, low: -bound, high: bound, rng: &rng)
    }
}
