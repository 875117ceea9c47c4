import Config
import NN
import TensorCore

/// Hugging Face `SwinForMaskedImageModeling` checkpoints to and from `SimMIM`.
///
/// The same model: HF's embeddings replace masked tokens by `mask_token` after the patch-embed
/// LayerNorm, its stages merge patches at their end (`layers.s.downsample`, 2×2 neighbourhoods in
/// our order), its relative-position tables are ours ((2w−1)², heads), its decoder is
/// `decoder.0` (a 1×1 conv to stride²·3 channels) and a pixel shuffle, and its loss is our L1 on
/// masked pixels, 1e-5 in the denominator included. Names differ, and HF keeps query, key and
/// value as three linears. HF builds the patch-embed and patch-merging LayerNorms with PyTorch's
/// eps 1e-5 whatever `layer_norm_eps` says, so only models with eps 1e-5 convert exactly; the
/// mask ratio and unit are not in HF's config (import: 0.6 and the encoder stride, the paper's).
public enum HFSwinSimMIM {
    public static func load(directory: String) throws(HFImportError) -> SimMIM {
        let (hf, tensors) = try HFWeights.read(HFSwinConfig.self, directory: directory)
        var file = tensors
        let model = SimMIM(config: try hf.modelConfig(), seed: 0)
        let state = try HFWeights.gather(model.stateDict(), from: &file, names: hfNames)
        if let extra = file.keys.sorted().first { throw .unexpectedTensor(extra) }
        do { try model.loadState(state, strict: true) } catch {
            preconditionFailure("HF import built a state dict the model rejects: \(error)")
        }
        return model
    }

    static func files(_ model: SimMIM) throws(ExportError) -> [ExportedFile] {
        guard model.config.layerNormEps == 1e-5 else {
            throw .unsupported(method: .simmim, format: .hf, reason:
                "SwinForMaskedImageModeling builds its patch-embed and patch-merging LayerNorms with eps 1e-5; this model uses \(model.config.layerNormEps)")
        }
        return [ExportedFile(name: "config.json", bytes: ModelExport.json(HFSwinConfig(model.config))),
                ModelExport.safeTensors(HFWeights.export(model.stateDict(), names: hfNames))]
    }

    // MARK: Names

    static let blockParts: [(ours: String, hf: String)] = [
        ("norm1.", "layernorm_before."), ("attn.proj.", "attention.output.dense."),
        ("attn.relative_position_bias_table", "attention.self.relative_position_bias_table"),
        ("norm2.", "layernorm_after."), ("mlp.fc1.", "intermediate.dense."), ("mlp.fc2.", "output.dense."),
    ]

    /// The HF names of one of our tensors: three row blocks (query, key, value) for a fused qkv.
    static func hfNames(_ name: String) -> [String] {
        let direct: [String: String] = [
            "encoder.mask_token": "swin.embeddings.mask_token",
            "decoder.0.weight": "decoder.0.weight", "decoder.0.bias": "decoder.0.bias",
        ]
        if let hf = direct[name] { return [hf] }
        let prefixes: [(String, String)] = [
            ("encoder.patch_embed.proj.", "swin.embeddings.patch_embeddings.projection."),
            ("encoder.patch_embed.norm.", "swin.embeddings.norm."), ("encoder.norm.", "swin.layernorm."),
        ]
        for (ours, hf) in prefixes where name.hasPrefix(ours) { return [hf + name.dropFirst(ours.count)] }
        // encoder.layers.<s>.downsample.<rest> or encoder.layers.<s>.blocks.<i>.<part>
        let parts = name.split(separator: ".", maxSplits: 4).map(String.init)
        if parts.count >= 4, parts[0] == "encoder", parts[1] == "layers" {
            let stage = "swin.encoder.layers.\(parts[2])."
            if parts[3] == "downsample" { return [stage + "downsample." + parts[4]] }
            if parts[3] == "blocks", parts.count == 5, let dot = parts[4].firstIndex(of: ".") {
                let block = stage + "blocks." + parts[4][..<dot] + "."
                let inner = parts[4][parts[4].index(after: dot)...]
                if inner.hasPrefix("attn.qkv.") {
                    let leaf = inner.dropFirst("attn.qkv.".count)
                    return ["query", "key", "value"].map { block + "attention.self.\($0)." + leaf }
                }
                for (o, h) in blockParts where inner.hasPrefix(o) { return [block + h + inner.dropFirst(o.count)] }
            }
        }
        preconditionFailure("no Hugging Face name for SimMIM tensor '\(name)'")
    }
}

/// The config.json keys of `SwinConfig` that describe the architecture.
struct HFSwinConfig: Codable {
    var imageSize, patchSize, numChannels, embedDim: Int
    var depths, numHeads: [Int]
    var windowSize: Int
    var mlpRatio: Double
    var qkvBias: Bool
    var hiddenAct: String
    var useAbsoluteEmbeddings: Bool
    var layerNormEps: Double
    var encoderStride: Int
    var modelType: String
    // Written on export, not needed on import.
    var architectures: [String]?
    var hiddenDropoutProb, attentionProbsDropoutProb, dropPathRate, initializerRange: Double?

    enum CodingKeys: String, CodingKey {
        case imageSize = "image_size", patchSize = "patch_size", numChannels = "num_channels", embedDim = "embed_dim"
        case depths, numHeads = "num_heads", windowSize = "window_size", mlpRatio = "mlp_ratio", qkvBias = "qkv_bias"
        case hiddenAct = "hidden_act", useAbsoluteEmbeddings = "use_absolute_embeddings", layerNormEps = "layer_norm_eps"
        case encoderStride = "encoder_stride", modelType = "model_type", architectures
        case hiddenDropoutProb = "hidden_dropout_prob", attentionProbsDropoutProb = "attention_probs_dropout_prob"
        case dropPathRate = "drop_path_rate", initializerRange = "initializer_range"
    }

    init(_ c: ModelConfig) {
        imageSize = c.imageSize
        patchSize = c.patchSize
        numChannels = 3
        embedDim = c.embedDim
        depths = c.depths
        numHeads = c.heads
        windowSize = c.windowSize
        mlpRatio = Double(c.mlpRatio)
        qkvBias = true
        hiddenAct = "gelu"
        useAbsoluteEmbeddings = false
        layerNormEps = Double("\(c.layerNormEps)") ?? Double(c.layerNormEps)
        encoderStride = c.encoderStride
        modelType = "swin"
        architectures = ["SwinForMaskedImageModeling"]
        hiddenDropoutProb = 0
        attentionProbsDropoutProb = 0
        dropPathRate = 0  // our pretraining has no stochastic depth
        initializerRange = 0.02
    }

    func modelConfig() throws(HFImportError) -> ModelConfig {
        try requireShared()
        try require(!useAbsoluteEmbeddings, .useAbsoluteEmbeddings, useAbsoluteEmbeddings, "SimMIM's Swin has no absolute position table")
        try require(layerNormEps == 1e-5, .layerNormEps, layerNormEps,
                    "HF's patch-embed and patch-merging LayerNorms always use 1e-5, ours use one eps throughout")
        try require(mlpRatio == mlpRatio.rounded() && mlpRatio >= 1, .mlpRatio, mlpRatio, "must be a whole number")
        let stride = patchSize << max(depths.count - 1, 0)
        try require(encoderStride == stride, .encoderStride, encoderStride,
                    "must be the encoder's total stride, patch_size × 2^(stages−1) = \(stride)")
        let config = ModelConfig(
            method: .simmim, imageSize: imageSize, patchSize: patchSize, embedDim: embedDim, depths: depths, heads: numHeads,
            windowSize: windowSize, mlpRatio: Int(mlpRatio), layerNormEps: Float(layerNormEps), maskRatio: 0.6,
            maskUnit: stride, normPixLoss: false)
        do { try config.validate() } catch { throw .invalidConfig(error) }
        return config
    }
}
