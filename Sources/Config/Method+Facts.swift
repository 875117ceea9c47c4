/// What each method offers beyond its settings: a summary, the poolings of its encoder, and
/// whether it fixes the mask ratio. The server checks inference options against these and
/// `GET /v1/methods` lists them, so the two cannot disagree.
extension Method {
    public var summary: String {
        switch self {
        case .mae: "MAE: ViT encoder on visible patches only, light decoder, norm-pixel MSE on masked patches"
        case .simmim: "SimMIM: Swin encoder over all tokens with a learned mask token, 1×1 head, L1 on masked pixels"
        case .ummae: "UM-MAE: uniform masking (one kept unit per 2×2) + secondary masking; compact visible input for Swin"
        case .greenmim: "GreenMIM: Swin over visible tokens only with group window attention and optimal grouping"
        case .mixmae: "MixMAE: two images mixed by a mask, large-window Swin, dual reconstruction"
        case .convmae: "ConvMAE: masked convolution stages + ViT over visible tokens, block-wise masking, multi-scale fusion"
        }
    }

    /// The poolings its encoder offers: only MAE's ViT has a class token.
    public var pools: [Pooling] { self == .mae ? [.mean, .cls, .none] : [.mean, .none] }

    /// The ratio it always masks, whatever a request asks (UM-MAE keeps one unit of every 2×2
    /// group); nil when the ratio is free.
    public var fixedMaskRatio: Float? { self == .ummae ? 0.75 : nil }
}

/// How encoder tokens become one vector per image (`POST /v1/jobs/{id}/features?pool=`).
public enum Pooling: String, Sendable, CaseIterable, Codable {
    /// The mean over tokens.
    case mean
    /// The class token (MAE).
    case cls
    /// Every token, unpooled.
    case none
}
