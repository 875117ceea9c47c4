#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Config
import NN
import TensorCore

/// Hugging Face `ViTMAEForPreTraining` checkpoints (a directory holding `config.json` and an F32
/// `model.safetensors`) to and from `MAE`, by the names in docs/methods/mae.md#hugging-face-interop.
///
/// HF keeps query, key and value as three linears; ours is one fused `attn.qkv` whose rows are
/// [q; k; v]. HF stores the two fixed sin-cos tables as (frozen) parameters; here they are buffers
/// computed from the config, so an import checks them instead of loading them. Dropout
/// probabilities are not read: our blocks have no dropout, and the released models use none.
public enum HFViTMAE {
    /// Builds the model `directory` describes and loads every tensor strictly.
    public static func load(directory: String) throws(HFImportError) -> MAE {
        let (hf, tensors) = try HFWeights.read(HFConfig.self, directory: directory)
        var file = try canonicalNames(tensors)
        let model = MAE(config: try hf.modelConfig(), seed: 0)
        var state = try HFWeights.gather(model.stateDict(), from: &file, names: hfNames)
        if let extra = file.keys.sorted().first { throw .unexpectedTensor(extra) }
        // HF's fixed tables must be ours, which are computed, not loaded.
        let ours = model.stateDict()
        for name in model.namedBuffers().map(\.name).sorted() {
            guard let value = state.removeValue(forKey: name), let own = ours[name] else { continue }
            // NaN-propagating maximum, so a NaN table cannot pass.
            let diff = withExtendedLifetime(value) {  // value.data points into it
                zip(value.data, own.data).reduce(Float(0)) { m, p in
                    let d = abs(p.0 - p.1)
                    return d > m || d.isNaN ? d : m
                }
            }
            guard diff < 1e-5 else { throw .positionTableMismatch(hfNames(name)[0], maxDifference: diff) }
        }
        do { try model.loadState(state, strict: true) } catch {
            preconditionFailure("HF import built a state dict the model rejects: \(error)")
        }
        return model
    }

    /// Writes `config.json` and `model.safetensors` (HF names, qkv split) into `directory`,
    /// creating it, so that `ViTMAEForPreTraining.from_pretrained(directory)` loads every key.
    public static func export(_ model: MAE, to directory: String) throws(HFImportError) {
        do { try ModelExport.write(files(model), to: directory) } catch {
            guard case let .io(operation, path, reason) = error else { preconditionFailure("\(error)") }
            throw .io(operation: operation, path: path, reason: reason)
        }
    }

    /// The export's `config.json` and `model.safetensors`.
    static func files(_ model: MAE) -> [ExportedFile] {
        [ExportedFile(name: "config.json", bytes: ModelExport.json(HFConfig(model.config))),
         ModelExport.safeTensors(HFWeights.export(model.stateDict(), names: hfNames))]
    }

    // MARK: Names

    static let wholeNames: [String: String] = [
        "cls_token": "vit.embeddings.cls_token", "pos_embed": "vit.embeddings.position_embeddings",
        "mask_token": "decoder.mask_token", "decoder_pos_embed": "decoder.decoder_pos_embed",
    ]
    static let prefixes: [(ours: String, hf: String)] = [
        ("patch_embed.proj.", "vit.embeddings.patch_embeddings.projection."), ("norm.", "vit.layernorm."),
        ("decoder_embed.", "decoder.decoder_embed."), ("decoder_norm.", "decoder.decoder_norm."),
        ("decoder_pred.", "decoder.decoder_pred."),
    ]
    static let blockLists: [(ours: String, hf: String)] = [
        ("blocks.", "vit.encoder.layer."), ("decoder_blocks.", "decoder.decoder_layers."),
    ]
    /// Inside one block; `attn.qkv.` is split into `attention.attention.{query, key, value}.`.
    static let blockParts: [(ours: String, hf: String)] = [
        ("norm1.", "layernorm_before."), ("attn.proj.", "attention.output.dense."), ("norm2.", "layernorm_after."),
        ("mlp.fc1.", "intermediate.dense."), ("mlp.fc2.", "output.dense."),
    ]
    /// transformers 5.x's save_pretrained writes the decoder layers under this prefix (undoing its
    /// `encoder.layer.` → `layers.` renaming also hits `decoder_layers.`) and reads both forms.
    static let decoderLayerAlias = "decoder.decoder_encoder.layer."

    /// The HF names of one of our tensors: three row blocks (query, key, value) for a fused qkv.
    static func hfNames(_ name: String) -> [String] {
        if let hf = wholeNames[name] { return [hf] }
        for (ours, hf) in prefixes where name.hasPrefix(ours) { return [hf + name.dropFirst(ours.count)] }
        for (ours, hf) in blockLists where name.hasPrefix(ours) {
            let rest = name.dropFirst(ours.count)  // "<i>.<part>.<leaf>"
            if let dot = rest.firstIndex(of: ".") {
                let layer = hf + rest[...dot], inner = rest[rest.index(after: dot)...]
                if inner.hasPrefix("attn.qkv.") {
                    let leaf = inner.dropFirst("attn.qkv.".count)
                    return ["query", "key", "value"].map { layer + "attention.attention.\($0)." + leaf }
                }
                for (o, h) in blockParts where inner.hasPrefix(o) { return [layer + h + inner.dropFirst(o.count)] }
            }
        }
        preconditionFailure("no Hugging Face name for MAE tensor '\(name)'")
    }

    static func canonicalNames(_ file: [String: Tensor]) throws(HFImportError) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (name, t) in file {
            let canonical = name.hasPrefix(decoderLayerAlias)
                ? "decoder.decoder_layers." + name.dropFirst(decoderLayerAlias.count) : name
            guard out.updateValue(t, forKey: canonical) == nil else { throw .duplicateTensor(canonical) }
        }
        return out
    }
}

/// The config.json keys of `ViTMAEConfig` that describe the architecture
/// (docs/methods/mae.md#hugging-face-interop).
struct HFConfig: Codable {
    var hiddenSize, numHiddenLayers, numAttentionHeads, intermediateSize: Int
    var hiddenAct: String
    var imageSize, patchSize, numChannels: Int
    var qkvBias: Bool
    var decoderNumAttentionHeads, decoderHiddenSize, decoderNumHiddenLayers, decoderIntermediateSize: Int
    var maskRatio: Double
    var normPixLoss: Bool
    var layerNormEps: Double
    var modelType: String
    // Written on export, not needed on import.
    var architectures: [String]?
    var hiddenDropoutProb, attentionProbsDropoutProb, initializerRange: Double?

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", intermediateSize = "intermediate_size"
        case hiddenAct = "hidden_act", imageSize = "image_size", patchSize = "patch_size"
        case numChannels = "num_channels", qkvBias = "qkv_bias"
        case decoderNumAttentionHeads = "decoder_num_attention_heads", decoderHiddenSize = "decoder_hidden_size"
        case decoderNumHiddenLayers = "decoder_num_hidden_layers", decoderIntermediateSize = "decoder_intermediate_size"
        case maskRatio = "mask_ratio", normPixLoss = "norm_pix_loss", layerNormEps = "layer_norm_eps"
        case modelType = "model_type", architectures
        case hiddenDropoutProb = "hidden_dropout_prob", attentionProbsDropoutProb = "attention_probs_dropout_prob"
        case initializerRange = "initializer_range"
    }

    init(_ c: ModelConfig) {
        hiddenSize = c.embedDim
        numHiddenLayers = c.depths[0]
        numAttentionHeads = c.heads[0]
        intermediateSize = c.embedDim * c.mlpRatio
        hiddenAct = "gelu"
        imageSize = c.imageSize
        patchSize = c.patchSize
        numChannels = 3
        qkvBias = true
        decoderNumAttentionHeads = c.decoderHeads
        decoderHiddenSize = c.decoderDim
        decoderNumHiddenLayers = c.decoderDepth
        decoderIntermediateSize = c.decoderDim * c.mlpRatio
        // Through the shortest decimal of the Float, so 1e-12 is written as 1e-12.
        maskRatio = Double("\(c.maskRatio)") ?? Double(c.maskRatio)
        normPixLoss = c.normPixLoss
        layerNormEps = Double("\(c.layerNormEps)") ?? Double(c.layerNormEps)
        modelType = "vit_mae"
        architectures = ["ViTMAEForPreTraining"]
        hiddenDropoutProb = 0
        attentionProbsDropoutProb = 0
        initializerRange = 0.02
    }

    func modelConfig() throws(HFImportError) -> ModelConfig {
        try requireShared()
        try require(hiddenSize >= 1 && intermediateSize % hiddenSize == 0, .intermediateSize, intermediateSize,
                    "must be an integer multiple (the MLP ratio) of hidden_size \(hiddenSize)")
        let ratio = intermediateSize / hiddenSize
        try require(decoderIntermediateSize == ratio * decoderHiddenSize, .decoderIntermediateSize,
                    decoderIntermediateSize,
                    "must be \(ratio) × decoder_hidden_size \(decoderHiddenSize): encoder and decoder share one MLP ratio")
        let config = ModelConfig(
            method: .mae, imageSize: imageSize, patchSize: patchSize, embedDim: hiddenSize, depths: [numHiddenLayers],
            heads: [numAttentionHeads], mlpRatio: ratio, layerNormEps: Float(layerNormEps), maskRatio: Float(maskRatio),
            maskUnit: patchSize, decoderDim: decoderHiddenSize, decoderDepth: decoderNumHiddenLayers,
            decoderHeads: decoderNumAttentionHeads, normPixLoss: normPixLoss)
        do { try config.validate() } catch { throw .invalidConfig(error) }
        return config
    }
}

/// Why a Hugging Face directory (ViTMAE or Swin) did not import, or an export was not written.
public enum HFImportError: Error, Equatable, CustomStringConvertible {
    /// `config.json` or `model.safetensors` is not in the directory.
    case missingFile(String)
    /// config.json is not a JSON object.
    case malformedConfig(path: String, reason: String)
    /// config.json lacks a key the architecture needs.
    case missingKey(String)
    /// A config.json value of the wrong JSON type (`key` is its path).
    case wrongType(key: String, expected: String)
    /// A config.json value that describes a model ours cannot represent.
    case unsupported(key: String, value: String, reason: String)
    /// The config translates to a `ModelConfig` that fails validation (our field names).
    case invalidConfig(ConfigError)
    /// model.safetensors cannot be read (malformed, not F32).
    case safeTensors(path: String, SafeTensorsError)
    /// A tensor the model needs is not in model.safetensors (HF name).
    case missingTensor(String)
    /// A tensor in model.safetensors the model has no place for (HF name).
    case unexpectedTensor(String)
    /// A tensor stored both under its name and under transformers 5's decoder-layer alias.
    case duplicateTensor(String)
    /// A tensor of the wrong shape (HF name; for query/key/value, one third of our fused qkv).
    case shapeMismatch(String, expected: [Int], found: [Int])
    /// A fixed position table that is not the 2-D sin-cos table (B2) to within 1e-5.
    case positionTableMismatch(String, maxDifference: Float)
    /// Creating the export directory or writing config.json failed.
    case io(operation: String, path: String, reason: String)

    public var description: String {
        switch self {
        case .missingFile(let p): "\(p) does not exist"
        case let .malformedConfig(p, reason): "\(p) is not a valid config: \(reason)"
        case .missingKey(let k): "config.json has no \"\(k)\""
        case let .wrongType(k, expected): "config.json \"\(k)\" must be of type \(expected)"
        case let .unsupported(k, v, reason): "config.json \"\(k)\" = \(v) is not supported: \(reason)"
        case .invalidConfig(let e): "config.json describes an invalid model: \(e)"
        case let .safeTensors(p, e): "\(p): \(e)"
        case .missingTensor(let n): "model.safetensors has no tensor '\(n)'"
        case .unexpectedTensor(let n): "model.safetensors has an unexpected tensor '\(n)'"
        case .duplicateTensor(let n): "model.safetensors holds '\(n)' twice (also as decoder.decoder_encoder.layer.*)"
        case let .shapeMismatch(n, e, f): "tensor '\(n)' has shape \(f), expected \(e)"
        case let .positionTableMismatch(n, d):
            "'\(n)' differs from the 2-D sin-cos table by up to \(d) (limit 1e-5); such a model cannot be represented"
        case let .io(op, p, reason): "\(op) \(p): \(reason)"
        }
    }
}

/// What the transformers configs we import have in common, and the checks they share.
protocol HFArchitectureConfig {
    associatedtype CodingKeys: CodingKey
    /// config.json's `model_type` this architecture must have.
    static var expectedModelType: String { get }
    var modelType: String { get }
    var hiddenAct: String { get }
    var numChannels: Int { get }
    var qkvBias: Bool { get }
    static var sharedKeys: (modelType: CodingKeys, hiddenAct: CodingKeys, numChannels: CodingKeys, qkvBias: CodingKeys) { get }
}

extension HFArchitectureConfig {
    /// Refuses a config.json value that `ok` rejects, naming its key and saying why.
    func require(_ ok: Bool, _ key: CodingKeys, _ value: Any, _ reason: String) throws(HFImportError) {
        if !ok { throw .unsupported(key: key.stringValue, value: "\(value)", reason: reason) }
    }

    /// What every architecture must say: its model type, the exact (erf) GELU, three input
    /// channels and a bias on the qkv projection.
    func requireShared() throws(HFImportError) {
        let k = Self.sharedKeys
        try require(modelType == Self.expectedModelType, k.modelType, modelType, "expected \"\(Self.expectedModelType)\"")
        try require(hiddenAct == "gelu", k.hiddenAct, hiddenAct, "only \"gelu\" (the exact erf form) is supported")
        try require(numChannels == 3, k.numChannels, numChannels, "only 3-channel images are supported")
        try require(qkvBias, k.qkvBias, qkvBias, "the model's qkv projection always has a bias")
    }
}

extension HFConfig: HFArchitectureConfig {
    static let expectedModelType = "vit_mae"
    static let sharedKeys = (modelType: CodingKeys.modelType, hiddenAct: CodingKeys.hiddenAct, numChannels: CodingKeys.numChannels,
                             qkvBias: CodingKeys.qkvBias)
}

extension HFSwinConfig: HFArchitectureConfig {
    static let expectedModelType = "swin"
    static let sharedKeys = (modelType: CodingKeys.modelType, hiddenAct: CodingKeys.hiddenAct, numChannels: CodingKeys.numChannels,
                             qkvBias: CodingKeys.qkvBias)
}
