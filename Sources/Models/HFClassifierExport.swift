import Config
import NN
import TensorCore

/// `--format hf` of a fine-tuned classifier: a transformers directory that
/// `AutoModelForImageClassification.from_pretrained` loads strictly.
///
///   - MAE pooled by its class token → `ViTForImageClassification`: the encoder under ViT's names
///     (MAE's, without the `decoder.`), the fixed sin-cos table as ViT's learned
///     `position_embeddings`, the head as `classifier`. ViT classifies the class token after the
///     final LayerNorm, as ours does; a mean-pooled MAE has no counterpart there.
///   - SimMIM and GreenMIM → `SwinForImageClassification`: the Swin encoder under SimMIM's names
///     without the mask token; Swin averages the last stage's tokens after the final LayerNorm,
///     as ours does, and needs eps 1e-5 for the same reason the pretraining export does.
/// Labels are `LABEL_0…`, transformers' own default names.
enum HFClassifierExport {
    static func files(_ classifier: Classifier) throws(ExportError) -> [ExportedFile] {
        let c = classifier.backbone.config, state = classifier.backbone.stateDict()
        func refuse(_ reason: String) -> ExportError { .unsupported(method: c.method, format: .hf, reason: reason) }
        var head = ["classifier.weight": classifier.head.weight]
        if let bias = classifier.head.bias { head["classifier.bias"] = bias }
        let labels = Labels(classes: classifier.classes)
        switch c.method {
        case .mae:
            guard classifier.pool == .cls else {
                throw refuse("ViTForImageClassification classifies the class token; this model pools the mean of the patch tokens (--format timm exports it, or fine-tune with \"pool\": \"cls\")")
            }
            let tensors = HFWeights.export(TimmExport.vitTensors(state), names: HFViTMAE.hfNames)
            return [ExportedFile(name: "config.json", bytes: ModelExport.json(Labelled(base: HFViTConfig(c), labels: labels))),
                    ModelExport.safeTensors(tensors.merging(head) { a, _ in a })]
        case .simmim, .greenmim:
            guard c.layerNormEps == 1e-5 else {
                throw refuse("SwinForImageClassification builds its patch-embed and patch-merging LayerNorms with eps 1e-5; this model uses \(c.layerNormEps)")
            }
            guard c.stageDims == c.depths.indices.map({ c.embedDim << $0 }) else {
                throw refuse("transformers' Swin doubles the width at every stage; this model's stage widths are \(c.stageDims)")
            }
            let encoder = state.filter { name, _ in name.hasPrefix("encoder.") && name != "encoder.mask_token" }
            let tensors = HFWeights.export(encoder, names: HFSwinSimMIM.hfNames)
            var config = HFSwinConfig(c)
            config.architectures = ["SwinForImageClassification"]
            return [ExportedFile(name: "config.json", bytes: ModelExport.json(Labelled(base: config, labels: labels))),
                    ModelExport.safeTensors(tensors.merging(head) { a, _ in a })]
        case .mixmae, .ummae, .convmae:
            throw refuse("transformers has no model of this encoder (it has ViT's and Swin's); --format timm exports where timm has one")
        }
    }

    /// transformers' `id2label` and `label2id`.
    struct Labels: Encodable {
        let names: [String]
        init(classes: Int) { names = (0..<classes).map { "LABEL_\($0)" } }

        enum CodingKeys: String, CodingKey { case id2label, label2id }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(Dictionary(uniqueKeysWithValues: names.enumerated().map { ("\($0.offset)", $0.element) }), forKey: .id2label)
            try c.encode(Dictionary(uniqueKeysWithValues: names.enumerated().map { ($0.element, $0.offset) }), forKey: .label2id)
        }
    }

    /// A config.json with the labels beside the architecture's own keys.
    struct Labelled<Base: Encodable>: Encodable {
        let base: Base
        let labels: Labels
        func encode(to encoder: any Encoder) throws {
            try base.encode(to: encoder)
            try labels.encode(to: encoder)
        }
    }
}

/// The config.json keys of transformers' `ViTConfig` for `ViTForImageClassification`.
struct HFViTConfig: Encodable {
    let hiddenSize, numHiddenLayers, numAttentionHeads, intermediateSize: Int
    let hiddenAct = "gelu"
    let imageSize, patchSize: Int
    let numChannels = 3
    let qkvBias = true
    let layerNormEps: Double
    let encoderStride: Int
    let modelType = "vit"
    let architectures = ["ViTForImageClassification"]
    let hiddenDropoutProb = 0.0, attentionProbsDropoutProb = 0.0, initializerRange = 0.02

    init(_ c: ModelConfig) {
        hiddenSize = c.embedDim
        numHiddenLayers = c.depths[0]
        numAttentionHeads = c.heads[0]
        intermediateSize = c.embedDim * c.mlpRatio
        imageSize = c.imageSize
        patchSize = c.patchSize
        encoderStride = c.patchSize
        // Through the shortest decimal of the Float, so 1e-6 is written as 1e-6.
        layerNormEps = Double("\(c.layerNormEps)") ?? Double(c.layerNormEps)
    }

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", intermediateSize = "intermediate_size"
        case hiddenAct = "hidden_act", imageSize = "image_size", patchSize = "patch_size", numChannels = "num_channels"
        case qkvBias = "qkv_bias", layerNormEps = "layer_norm_eps", encoderStride = "encoder_stride"
        case modelType = "model_type", architectures
        case hiddenDropoutProb = "hidden_dropout_prob", attentionProbsDropoutProb = "attention_probs_dropout_prob"
        case initializerRange = "initializer_range"
    }
}
