/// How training and evaluation images become normalised tensors. JSON keys are snake_case;
/// a missing key takes its default (MAE's recipe: RandomResizedCrop(0.2–1, 3/4–4/3, bicubic),
/// flip 0.5, ImageNet mean/std).
///
/// Training: random resized crop (or a plain resize when `random_resized_crop` is false), then
/// a horizontal flip with `hflip_probability`. Evaluation: resize the shorter side to
/// `image_size / eval_crop_fraction`, then a centre crop. Both then replicate gray images to
/// three channels (the models take RGB) and normalise with `mean` and `std` when `normalize`.
public struct AugmentationConfig: Codable, Sendable, Equatable {
    public enum Interpolation: String, Codable, Sendable { case bilinear, bicubic }

    /// Use RandomResizedCrop for training (else resize the whole image). Default true.
    public var randomResizedCrop = true
    /// Range of the crop's area as a fraction of the image. Default [0.2, 1].
    public var scale: [Float] = [0.2, 1]
    /// Range of the crop's aspect ratio (width / height), sampled log-uniformly. Default [3/4, 4/3].
    public var ratio: [Float] = [3.0 / 4.0, 4.0 / 3.0]
    /// Resampling filter for every resize. Default bicubic.
    public var interpolation: Interpolation = .bicubic
    /// Probability of a horizontal flip in training. Default 0.5.
    public var hflipProbability: Float = 0.5
    /// Evaluation: the centre crop's share of the resized shorter side. Default 0.875 (224 of 256).
    public var evalCropFraction: Float = 0.875
    /// Subtract `mean` and divide by `std` per channel. Default true.
    public var normalize = true
    /// Per-channel (R, G, B) mean, default ImageNet's.
    public var mean: [Float] = AugmentationConfig.imageNetMean
    /// Per-channel (R, G, B) standard deviation, default ImageNet's.
    public var std: [Float] = AugmentationConfig.imageNetStd

    public static let imageNetMean: [Float] = [0.485, 0.456, 0.406]
    public static let imageNetStd: [Float] = [0.229, 0.224, 0.225]

    public init() {}

    /// Field → reason for every invalid field (empty when valid), in the server's 422 style.
    public func validationErrors() -> [(field: String, reason: String)] {
        var errors: [(String, String)] = []
        if scale.count != 2 || !(scale[0] > 0 && scale[0] <= scale[1] && scale[1] <= 1) {
            errors.append(("scale", "must be [low, high] with 0 < low ≤ high ≤ 1, got \(scale)"))
        }
        if ratio.count != 2 || !(ratio[0] > 0 && ratio[0] <= ratio[1]) {
            errors.append(("ratio", "must be [low, high] with 0 < low ≤ high, got \(ratio)"))
        }
        if !(0...1).contains(hflipProbability) {
            errors.append(("hflip_probability", "must be in 0…1, got \(hflipProbability)"))
        }
        if !(evalCropFraction > 0 && evalCropFraction <= 1) {
            errors.append(("eval_crop_fraction", "must be in (0, 1], got \(evalCropFraction)"))
        }
        if mean.count != 3 { errors.append(("mean", "must have 3 values (R, G, B), got \(mean.count)")) }
        if std.count != 3 || !std.allSatisfy({ $0 > 0 }) {
            errors.append(("std", "must be 3 positive values (R, G, B), got \(std)"))
        }
        return errors
    }

    enum CodingKeys: String, CodingKey {
        case randomResizedCrop = "random_resized_crop", scale, ratio, interpolation
        case hflipProbability = "hflip_probability", evalCropFraction = "eval_crop_fraction"
        case normalize, mean, std
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = AugmentationConfig()
        randomResizedCrop = try c.decodeIfPresent(Bool.self, forKey: .randomResizedCrop) ?? d.randomResizedCrop
        scale = try c.decodeIfPresent([Float].self, forKey: .scale) ?? d.scale
        ratio = try c.decodeIfPresent([Float].self, forKey: .ratio) ?? d.ratio
        interpolation = try c.decodeIfPresent(Interpolation.self, forKey: .interpolation) ?? d.interpolation
        hflipProbability = try c.decodeIfPresent(Float.self, forKey: .hflipProbability) ?? d.hflipProbability
        evalCropFraction = try c.decodeIfPresent(Float.self, forKey: .evalCropFraction) ?? d.evalCropFraction
        normalize = try c.decodeIfPresent(Bool.self, forKey: .normalize) ?? d.normalize
        mean = try c.decodeIfPresent([Float].self, forKey: .mean) ?? d.mean
        std = try c.decodeIfPresent([Float].self, forKey: .std) ?? d.std
    }
}
