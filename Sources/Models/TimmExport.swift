import Config
import NN
import TensorCore

/// `--format timm`: a pretrained encoder as a timm model directory — `config.json` in timm's hub
/// layout (`architecture`, `model_args`, `pretrained_cfg`) and `model.safetensors` under timm's
/// names, without a classifier head (`num_classes` 0) — which
/// `timm.create_model("local-dir:DIR", pretrained=True)` loads strictly, or which
/// `timm.create_model(architecture, num_classes=0, **model_args).load_state_dict(...)` accepts.
///
/// Exported only where timm's model computes exactly what ours does:
///   - MAE → `VisionTransformer`: our encoder already carries timm's names; the fixed sin-cos
///     table becomes timm's learned `pos_embed` (class row included).
///   - SimMIM, GreenMIM → `SwinTransformer`: the same blocks and names, except that timm merges
///     patches at the start of the next stage (`layers.{s+1}.downsample`) where ours merge at the
///     end of stage s; SimMIM's mask token and both decoders are left out.
/// and only when the LayerNorm eps is the one timm builds the model with, since config.json
/// cannot change it: 1e-6 for ViT, 1e-5 (PyTorch's default) for Swin.
enum TimmExport {
    static let vitEps: Float = 1e-6
    static let swinEps: Float = 1e-5

    static func files(_ model: any MIMModel) throws(ExportError) -> [ExportedFile] {
        try files(model, head: nil)
    }

    /// A fine-tuned classifier: the encoder and its head, as timm's model with `num_classes`
    /// outputs. Its pooling must be one timm's model has: ViT's class token (`global_pool`
    /// "token") or the mean of the patch tokens after the final norm ("avg" with `fc_norm`
    /// false); Swin's mean after the final norm ("avg").
    static func files(_ classifier: Classifier) throws(ExportError) -> [ExportedFile] {
        try files(classifier.backbone, head: classifier)
    }

    private static func files(_ model: any MIMModel, head: Classifier?) throws(ExportError) -> [ExportedFile] {
        let c = model.config
        func refuse(_ reason: String) -> ExportError { .unsupported(method: c.method, format: .timm, reason: reason) }
        switch c.method {
        case .mae:
            guard c.layerNormEps == vitEps else {
                throw refuse("timm's VisionTransformer builds its LayerNorms with eps 1e-6 and config.json cannot change that; this model uses \(c.layerNormEps)")
            }
            return vit(model.stateDict(), c, head: head)
        case .simmim, .greenmim:
            guard c.layerNormEps == swinEps else {
                throw refuse("timm's SwinTransformer builds its LayerNorms with eps 1e-5 and config.json cannot change that; this model uses \(c.layerNormEps)")
            }
            guard c.stageDims == c.depths.indices.map({ c.embedDim << $0 }) else {
                throw refuse("timm's SwinTransformer doubles the width at every stage; this model's stage widths are \(c.stageDims)")
            }
            return swin(model.stateDict(), c, head: head)
        case .mixmae:
            throw refuse("MixMAE's Swin never shifts its windows and adds an absolute position table; timm's SwinTransformer shifts every second block and has no such table")
        case .ummae:
            throw refuse("UM-MAE's pyramid computes its attention bias with a coordinate MLP (attn.posmlp) and downsamples with a 2×2 convolution; timm's Swin has a bias table and patch merging")
        case .convmae:
            throw refuse("ConvMAE's encoder is a hybrid of convolution stages and ViT blocks with no counterpart in timm")
        }
    }

    // MARK: ViT

    /// MAE's encoder tensors: every name outside its decoder, unchanged.
    static func vitTensors(_ state: [String: Tensor]) -> [String: Tensor] {
        state.filter { name, _ in
            ["cls_token", "pos_embed"].contains(name) || ["patch_embed.", "blocks.", "norm."].contains { name.hasPrefix($0) }
        }
    }

    static func vit(_ state: [String: Tensor], _ c: ModelConfig, head: Classifier? = nil) -> [ExportedFile] {
        let mean = head?.pool == .mean
        let args = ModelArgs(imgSize: c.imageSize, patchSize: c.patchSize, embedDim: c.embedDim, mlpRatio: Double(c.mlpRatio),
                             depth: c.depths[0], numHeads: c.heads[0], depths: nil, heads: nil, windowSize: nil,
                             globalPool: mean ? "avg" : "token", numClasses: head?.classes ?? 0, fcNorm: mean ? false : nil)
        let config = TimmConfig(architecture: "vit_base_patch16_224", numFeatures: c.embedDim, modelArgs: args,
                                imageSize: c.imageSize)
        var tensors = vitTensors(state)
        if let head { tensors["head.weight"] = head.head.weight; tensors["head.bias"] = head.head.bias }
        return [ExportedFile(name: "config.json", bytes: ModelExport.json(config)), ModelExport.safeTensors(tensors)]
    }

    // MARK: Swin

    /// The timm name of one of our Swin encoder tensors (without the model's `encoder.` prefix), or
    /// nil for one timm's encoder has no place for (SimMIM's mask token).
    static func swinName(_ name: String) -> String? {
        if name == "mask_token" { return nil }
        // layers.<s>.downsample.<rest> → layers.<s+1>.downsample.<rest>
        let parts = name.split(separator: ".", maxSplits: 3).map(String.init)
        if parts.count == 4, parts[0] == "layers", parts[2] == "downsample", let s = Int(parts[1]) {
            return "layers.\(s + 1).downsample.\(parts[3])"
        }
        return name
    }

    /// The inverse of `swinName` (for import in tests).
    static func ourSwinName(_ timm: String) -> String {
        let parts = timm.split(separator: ".", maxSplits: 3).map(String.init)
        if parts.count == 4, parts[0] == "layers", parts[2] == "downsample", let s = Int(parts[1]) {
            return "layers.\(s - 1).downsample.\(parts[3])"
        }
        return timm
    }

    static func swinTensors(_ state: [String: Tensor]) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (name, t) in state where name.hasPrefix("encoder.") {
            if let timm = swinName(String(name.dropFirst("encoder.".count))) { out[timm] = t }
        }
        return out
    }

    static func swin(_ state: [String: Tensor], _ c: ModelConfig, head: Classifier? = nil) -> [ExportedFile] {
        let args = ModelArgs(imgSize: c.imageSize, patchSize: c.patchSize, embedDim: c.embedDim, mlpRatio: Double(c.mlpRatio),
                             depth: nil, numHeads: nil, depths: c.depths, heads: c.heads, windowSize: c.windowSize,
                             globalPool: "avg", numClasses: head?.classes ?? 0, fcNorm: nil)
        let config = TimmConfig(architecture: "swin_base_patch4_window7_224", numFeatures: c.encoderDim, modelArgs: args,
                                imageSize: c.imageSize)
        var tensors = swinTensors(state)
        if let head { tensors["head.fc.weight"] = head.head.weight; tensors["head.fc.bias"] = head.head.bias }
        return [ExportedFile(name: "config.json", bytes: ModelExport.json(config)), ModelExport.safeTensors(tensors)]
    }

    // MARK: config.json

    /// timm's `model_args`: the constructor arguments that override the architecture's defaults.
    struct ModelArgs: Encodable {
        let imgSize, patchSize, embedDim: Int
        let mlpRatio: Double
        let depth, numHeads: Int?         // ViT
        let depths, heads: [Int]?         // Swin
        let windowSize: Int?
        let globalPool: String
        /// 0: the encoder alone (no head).
        let numClasses: Int
        /// ViT: false to norm before pooling, as our encoder does (timm's default for "avg" is after).
        let fcNorm: Bool?

        enum CodingKeys: String, CodingKey {
            case imgSize = "img_size", patchSize = "patch_size", embedDim = "embed_dim", mlpRatio = "mlp_ratio"
            case depth, numHeads = "num_heads", depths, windowSize = "window_size"
            case globalPool = "global_pool", numClasses = "num_classes", fcNorm = "fc_norm"
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(imgSize, forKey: .imgSize)
            try c.encode(patchSize, forKey: .patchSize)
            try c.encode(embedDim, forKey: .embedDim)
            try c.encode(mlpRatio, forKey: .mlpRatio)
            try c.encodeIfPresent(depth, forKey: .depth)
            try c.encodeIfPresent(depths, forKey: .depths)
            // Swin takes its per-stage heads under the same key as ViT's single count.
            if let heads { try c.encode(heads, forKey: .numHeads) } else { try c.encodeIfPresent(numHeads, forKey: .numHeads) }
            try c.encodeIfPresent(windowSize, forKey: .windowSize)
            try c.encode(globalPool, forKey: .globalPool)
            try c.encode(numClasses, forKey: .numClasses)
            try c.encodeIfPresent(fcNorm, forKey: .fcNorm)
        }
    }

    /// timm's hub config.json.
    struct TimmConfig: Encodable {
        let architecture: String
        let numFeatures: Int
        let modelArgs: ModelArgs
        let imageSize: Int

        enum CodingKeys: String, CodingKey {
            case architecture, numClasses = "num_classes", numFeatures = "num_features", globalPool = "global_pool"
            case modelArgs = "model_args", pretrainedCfg = "pretrained_cfg"
        }
        struct PretrainedCfg: Encodable {
            let inputSize: [Int]
            let numClasses: Int
            let fixedInputSize = true
            enum CodingKeys: String, CodingKey {
                case inputSize = "input_size", numClasses = "num_classes", fixedInputSize = "fixed_input_size"
            }
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(architecture, forKey: .architecture)
            try c.encode(modelArgs.numClasses, forKey: .numClasses)
            try c.encode(numFeatures, forKey: .numFeatures)
            try c.encode(modelArgs.globalPool, forKey: .globalPool)
            try c.encode(modelArgs, forKey: .modelArgs)
            try c.encode(PretrainedCfg(inputSize: [3, imageSize, imageSize], numClasses: modelArgs.numClasses), forKey: .pretrainedCfg)
        }
    }
}
