/// The resolved architecture and masking of one pretraining model. One flat, Codable struct
/// for every method so presets, job overrides and checkpoints share a shape; each method
/// reads the fields it needs and `validate()` checks those.
///
/// Legend used across the model files: B batch, L tokens, D (ViT) or C (Swin) width,
/// G grid side in tokens, p patch size in pixels, u mask unit in pixels.
public struct ModelConfig: Codable, Sendable, Equatable {
    public var method: Method
    public var imageSize: Int
    public var patchSize: Int
    /// ViT width D, or the first stage's width (Swin's C, ConvMAE's stage 1).
    public var embedDim: Int
    /// ViT: one entry (the depth). Swin: blocks per stage.
    public var depths: [Int]
    /// Heads per stage (ViT: one entry).
    public var heads: [Int]
    /// Swin window side in tokens (per stage resolution ≤ window: the whole map, no shift).
    public var windowSize: Int
    public var mlpRatio: Int
    public var layerNormEps: Float
    public var maskRatio: Float
    /// Masking granularity in pixels (a multiple of the patch).
    public var maskUnit: Int
    public var decoderDim: Int
    public var decoderDepth: Int
    public var decoderHeads: Int
    /// Normalise each target patch by its own mean and (unbiased) variance.
    public var normPixLoss: Bool
    // UM-MAE and GreenMIM options (nil: the method's default; see VisibleOnlyOptions.swift).
    public var secondaryMaskRatio: Float?
    public var posMLPDim: Int?
    public var decoderPositions: DecoderPositions?
    public var grouping: GroupingMode?
    public var groupSizeMax: Int?
    /// Per-stage widths when they do not double (ConvMAE's 256/384/768); nil means C·2^s.
    public var stageWidths: [Int]?

    public init(method: Method, imageSize: Int, patchSize: Int, embedDim: Int, depths: [Int], heads: [Int],
                windowSize: Int = 0, mlpRatio: Int = 4, layerNormEps: Float, maskRatio: Float, maskUnit: Int,
                decoderDim: Int = 0, decoderDepth: Int = 0, decoderHeads: Int = 0, normPixLoss: Bool,
                stageWidths: [Int]? = nil) {
        self.method = method
        self.imageSize = imageSize
        self.patchSize = patchSize
        self.embedDim = embedDim
        self.depths = depths
        self.heads = heads
        self.windowSize = windowSize
        self.mlpRatio = mlpRatio
        self.layerNormEps = layerNormEps
        self.maskRatio = maskRatio
        self.maskUnit = maskUnit
        self.decoderDim = decoderDim
        self.decoderDepth = decoderDepth
        self.decoderHeads = decoderHeads
        self.normPixLoss = normPixLoss
        self.stageWidths = stageWidths
    }

    enum CodingKeys: String, CodingKey {
        case method, depths, heads
        case imageSize = "image_size", patchSize = "patch_size", embedDim = "embed_dim"
        case windowSize = "window_size", mlpRatio = "mlp_ratio", layerNormEps = "layer_norm_eps"
        case maskRatio = "mask_ratio", maskUnit = "mask_unit", decoderDim = "decoder_dim"
        case decoderDepth = "decoder_depth", decoderHeads = "decoder_heads", normPixLoss = "norm_pix_loss"
        case secondaryMaskRatio = "secondary_mask_ratio", posMLPDim = "pos_mlp_dim"
        case decoderPositions = "decoder_positions", grouping, groupSizeMax = "group_size_max"
        case stageWidths = "stage_widths"
    }

    /// Tokens per side after the patch embedding.
    /// Settings that change what a model computes but none of its parameters' shapes: a
    /// checkpoint of a model that differs from another only in these loads into it.
    public static let behaviourFields: Set<String> = [
        "layer_norm_eps", "mask_ratio", "norm_pix_loss", "secondary_mask_ratio", "decoder_positions", "grouping", "group_size_max",
    ]

    /// The first setting (by name) outside `behaviourFields` where `other` differs, as "name is
    /// X there, Y here"; nil when `other`'s weights fit this model.
    public func weightShapeDifference(from other: ModelConfig) -> String? {
        let here = JSONValue.object(of: self), there = JSONValue.object(of: other)
        for key in Set(here.keys).union(there.keys).sorted() where !Self.behaviourFields.contains(key) {
            let a = there[key] ?? .null, b = here[key] ?? .null
            if a != b { return "\(key) is \(a.summary) there, \(b.summary) here" }
        }
        return nil
    }

    public var grid: Int { imageSize / patchSize }
    /// Mask units per side.
    public var unitGrid: Int { imageSize / maskUnit }
    /// Stage widths: `stage_widths` when given, else Swin's C, 2C, 4C, …
    public var stageDims: [Int] { stageWidths ?? depths.indices.map { embedDim << $0 } }
    /// Swin stage resolutions: G, G/2, …
    public var stageGrids: [Int] { depths.indices.map { grid >> $0 } }
    /// The encoder's output width.
    public var encoderDim: Int { method.isHierarchical ? stageDims.last ?? embedDim : embedDim }
    /// Total stride of the encoder's last stage in pixels.
    public var encoderStride: Int { method.isHierarchical ? patchSize << (depths.count - 1) : patchSize }
}

/// The pretraining methods.
public enum Method: String, Codable, Sendable, CaseIterable {
    case mae, simmim
    case ummae, greenmim
    case mixmae, convmae

    /// Pyramid encoders (stage widths and strides grow).
    public var isHierarchical: Bool { self != .mae }
    /// Swin-style window attention in every stage (ConvMAE's pyramid is conv + ViT).
    public var usesWindows: Bool { isHierarchical && self != .convmae }
}

/// One invalid configuration field and why.
public struct FieldError: Error, Sendable, Equatable, CustomStringConvertible {
    public let field: String
    public let reason: String

    public init(_ field: String, _ reason: String) {
        self.field = field
        self.reason = reason
    }

    public var description: String { "\(field): \(reason)" }
}

/// Every problem with a configuration at once, so a client can fix them in one go.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public let errors: [FieldError]

    public init(errors: [FieldError]) { self.errors = errors }

    /// One entry per field, its reasons joined, in first-seen order.
    init(merging list: [FieldError]) {
        var order: [String] = [], reasons: [String: [String]] = [:]
        for f in list {
            if reasons[f.field] == nil { order.append(f.field) }
            reasons[f.field, default: []].append(f.reason)
        }
        errors = order.map { FieldError($0, reasons[$0]!.joined(separator: "; ")) }
    }

    public var description: String { errors.map(\.description).joined(separator: "; ") }
}

extension ModelConfig {
    /// The most stages a hierarchical encoder may have (image_size ≤ 1024 allows no more than 10).
    public static let maxStages = 8

    /// Checks every constraint the method's model relies on; throws all violations.
    public func validate() throws(ConfigError) {
        var e: [FieldError] = []
        func check(_ ok: Bool, _ field: String, _ reason: @autoclosure () -> String) {
            if !ok { e.append(FieldError(field, reason())) }
        }
        // Types and ranges come from the schema. Nothing below runs on a field out of its range
        // (a 65-stage list would overflow the stride `patch << stages`).
        e = JobSchema.problems(in: JSONValue.object(of: self), group: .model)
        if !e.isEmpty { throw ConfigError(merging: e) }
        check(imageSize % patchSize == 0, "patch_size", "\(patchSize) does not divide image_size \(imageSize)")
        check(heads.count == depths.count, "heads", "needs one entry per stage (\(depths.count)), got \(heads.count)")
        if heads.count == depths.count && embedDim >= 1 && (stageWidths ?? depths).count == depths.count {
            // ConvMAE's conv stages have no attention: only its ViT stage (the last) uses heads.
            for (s, h) in heads.enumerated() where method != .convmae || s == heads.count - 1 {
                let width = method.isHierarchical ? stageDims[s] : embedDim
                check(h >= 1 && width % h == 0, "heads", "stage \(s + 1) width \(width) is not divisible by \(h) heads")
            }
        }
        if !method.isHierarchical { check(depths.count == 1, "depths", "a ViT has one stage, got \(depths.count)") }
        check(maskUnit >= 1 && patchSize >= 1 && maskUnit % patchSize == 0, "mask_unit",
              "\(maskUnit) px must be a multiple of patch_size \(patchSize)")
        if maskUnit >= 1 { check(imageSize % maskUnit == 0, "mask_unit", "\(maskUnit) px does not divide image_size \(imageSize)") }
        if method.usesWindows && e.isEmpty {
            check(windowSize >= 1, "window_size", "must be ≥ 1, got \(windowSize)")
            check(imageSize % encoderStride == 0, "depths",
                  "\(depths.count) stages need image_size divisible by \(encoderStride) (patch × 2^(stages−1))")
            if windowSize >= 1 {
                for (s, g) in stageGrids.enumerated() where g > windowSize {
                    check(g % windowSize == 0, "window_size", "\(windowSize) does not divide stage \(s + 1) grid \(g)")
                }
            }
        }
        if method == .simmim && maskUnit >= 1 && patchSize >= 1 && depths.count >= 1 {
            check(maskUnit % encoderStride == 0, "mask_unit",
                  "SimMIM's \(maskUnit) px unit must be a multiple of the encoder stride \(encoderStride)")
        }
        if method == .mae {
            check(decoderDim >= 1 && decoderDepth >= 1 && decoderHeads >= 1, "decoder_dim", "MAE needs a decoder (dim, depth, heads ≥ 1)")
            if decoderHeads >= 1 { check(decoderDim % decoderHeads == 0, "decoder_heads", "decoder_dim \(decoderDim) is not divisible by \(decoderHeads)") }
            check(embedDim % 4 == 0 && decoderDim % 4 == 0, "embed_dim", "sin-cos positions need widths divisible by 4")
            check(maskUnit == patchSize, "mask_unit", "MAE masks whole patches: mask_unit must equal patch_size")
            let tokens = (imageSize / max(patchSize, 1)) * (imageSize / max(patchSize, 1))
            if maskRatio > 0 && maskRatio < 1 {
                check(Int(Float(tokens) * (1 - maskRatio)) >= 1, "mask_ratio", "keeps no token of \(tokens)")
            }
        }
        e += visibleOnlyErrors()
        e += mixConvErrors()
        if !e.isEmpty { throw ConfigError(merging: e) }
    }
}
