import Config
import NN
import TensorCore

/// What fine-tuning trains (docs/finetuning.md): a method's encoder, pooled, under a linear
/// classification head. The decoder and anything else pretraining alone uses stay out: they
/// are neither trained, decayed nor saved.
///
/// - The encoder's parameters are those its pooled output depends on, found once by a
///   backward pass through `encode` at construction, so no method needs a list of them.
/// - Layer ids for layer-wise learning-rate decay follow the encoder's residual blocks in
///   registration order (the order they run): parameters before the first block are layer 0,
///   those of block i (from 1) are layer i, anything between blocks goes with the block before
///   it, and the final norm and the head are layer L + 1. A parameter of layer k learns at
///   `decay^(L + 1 − k)` times the base rate.
/// - Drop-path rates rise linearly over the same blocks, from 0 to the configured rate.
public final class Classifier: @unchecked Sendable {
    public let backbone: any MIMModel
    public let head: Linear
    public let pool: Pooling
    public let classes: Int
    /// The encoder's blocks, in order.
    public let blocks: [any ResidualBlock]
    private let encoderParameters: [(name: String, tensor: Tensor)]
    private let layerIDs: [String: Int]

    /// The head starts as in MAE's fine-tuning: truncated normal with std 2e-5, zero bias.
    public init(backbone: any MIMModel, classes: Int, pool: Pooling, seed: UInt64) {
        precondition(classes >= 2, "a classifier needs at least 2 classes, got \(classes)")
        self.backbone = backbone
        self.classes = classes
        self.pool = pool
        var rng = RandomGenerator(seed: seed ^ 0x6865_6164)
        head = Linear(backbone.config.encoderDim, classes, initializer: .truncatedNormal(std: 2e-5), rng: &rng)

        let used = Self.parametersReaching(backbone, pool: pool)
        encoderParameters = backbone.namedParameters().filter { used.contains(ObjectIdentifier($0.tensor)) }
        var blocks: [any ResidualBlock] = [], ids: [String: Int] = [:], outside: [String] = []
        func walk(_ module: Module, _ prefix: String, _ block: Int?) {
            var block = block
            if block == nil, let b = module as? any ResidualBlock,
               b.namedParameters().contains(where: { used.contains(ObjectIdentifier($0.tensor)) }) {
                blocks.append(b)
                block = blocks.count
            }
            for (name, t) in module.ownParameters where used.contains(ObjectIdentifier(t)) {
                ids[prefix + name] = block ?? blocks.count
                if block == nil { outside.append(prefix + name) }
            }
            for (name, child) in module.children { walk(child, prefix + name + ".", block) }
        }
        walk(backbone, "", nil)
        let last = blocks.count
        // Parameters after the last block (the final norm) go with the head.
        for name in outside where ids[name] == last { ids[name] = last + 1 }
        self.blocks = blocks
        layerIDs = ids
    }

    /// Logits (B, classes) for normalised images (B, 3, H, W), on the tape.
    public func callAsFunction(_ images: Tensor) -> Tensor { head(backbone.encode(images, pool: pool)) }

    /// Encoder parameters under the backbone's names, then `head.weight`, `head.bias`.
    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        encoderParameters + head.namedParameters(prefix: "head.")
    }

    public var parameters: [Tensor] { namedParameters().map(\.tensor) }

    /// What a fine-tuning checkpoint holds: every trained tensor, by name.
    public func stateDict() -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: namedParameters().map { ($0.name, $0.tensor) })
    }

    /// Loads a fine-tuning checkpoint's tensors (strict: every name, nothing else).
    public func loadState(_ state: [String: Tensor]) throws(StateError) {
        let own = namedParameters()
        for (name, t) in own {
            guard let src = state[name] else { throw .missing(name) }
            guard src.shape == t.shape else { throw .shapeMismatch(name, expected: t.shape, found: src.shape) }
            t.load(from: src)
        }
        let names = Set(own.map(\.name))
        if let extra = state.keys.sorted().first(where: { !names.contains($0) }) { throw .unexpected(extra) }
    }

    /// Loads a pretraining checkpoint's encoder (its decoder and the head are left as they are).
    public func loadEncoder(from state: [String: Tensor]) throws(StateError) {
        for (name, t) in encoderParameters {
            guard let src = state[name] else { throw .missing(name) }
            guard src.shape == t.shape else { throw .shapeMismatch(name, expected: t.shape, found: src.shape) }
            t.load(from: src)
        }
    }

    /// Layers for layer-wise decay: blocks + 2 (embedding, blocks, norm and head).
    public var layerCount: Int { blocks.count + 2 }

    /// The layer id of a parameter of `namedParameters()` (0 … blocks.count + 1).
    public func layerID(_ name: String) -> Int { name.hasPrefix("head.") ? blocks.count + 1 : layerIDs[name] ?? 0 }

    /// The learning-rate multiplier of a parameter under layer-wise decay `decay` (1: none).
    public func lrScale(_ name: String, decay: Float) -> Float {
        (0..<(blocks.count + 1 - layerID(name))).reduce(Float(1)) { s, _ in s * decay }
    }

    /// Drop-path rates rising linearly from 0 (first block) to `rate` (last block).
    public func setDropPath(_ rate: Float) {
        let n = blocks.count
        for (i, b) in blocks.enumerated() { b.dropPathRate = n > 1 ? rate * Float(i) / Float(n - 1) : 0 }
    }

    /// The method's no-decay rule for the encoder; the head's bias gets none either.
    public func excludedFromWeightDecay(_ name: String, _ tensor: Tensor) -> Bool {
        name.hasPrefix("head.") ? tensor.rank <= 1 : backbone.excludedFromWeightDecay(name, tensor)
    }

    /// The parameters a backward pass from the pooled encoding of one blank image reaches.
    static func parametersReaching(_ model: any MIMModel, pool: Pooling) -> Set<ObjectIdentifier> {
        let s = model.config.imageSize
        let out = model.encode(Tensor(zeros: [1, 3, s, s]), pool: pool)
        out.sum(axes: Array(0..<out.rank)).backward()
        var used = Set<ObjectIdentifier>()
        for p in model.parameters where p.grad != nil { used.insert(ObjectIdentifier(p)) }
        model.zeroGrad()
        return used
    }
}
