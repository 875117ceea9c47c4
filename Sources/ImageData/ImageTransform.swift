import TensorCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns one image into a normalised (3, size, size) planar sample: the training
/// augmentation or the evaluation resize + centre crop of an `AugmentationConfig`. All
/// randomness comes from the generator passed in, so a sample is a pure function of the
/// image and that generator's state.
public struct ImageTransform: Sendable {
    public enum Mode: Sendable { case train, eval }

    public let config: AugmentationConfig
    public let size: Int
    public let mode: Mode

    public init(_ config: AugmentationConfig, size: Int, mode: Mode) {
        precondition(size > 0, "output size must be positive, got \(size)")
        let errors = config.validationErrors()
        precondition(errors.isEmpty, "invalid augmentation: \(errors.map { "\($0.field): \($0.reason)" })")
        self.config = config
        self.size = size
        self.mode = mode
    }

    /// Writes 3 · size · size floats (planes R, G, B) at `out`.
    public func apply(_ image: RGBImage, rng: inout RandomGenerator, into out: UnsafeMutablePointer<Float>) {
        let box: (x: Double, y: Double, w: Double, h: Double)
        var flip = false
        switch mode {
        case .train:
            box = config.randomResizedCrop ? randomCrop(width: image.width, height: image.height, rng: &rng)
                : (0, 0, Double(image.width), Double(image.height))
            flip = rng.uniform() < config.hflipProbability
        case .eval:
            box = centreCrop(width: image.width, height: image.height)
        }
        let pixels = resample(image, box: box, outputWidth: size, outputHeight: size, filter: config.interpolation)
        let c = image.channels, plane = size * size
        for ch in 0..<3 {
            let mean = config.normalize ? config.mean[ch] : 0, invStd = config.normalize ? 1 / config.std[ch] : 1
            let source = c == 1 ? 0 : ch  // gray → 3 channels
            for y in 0..<size {
                for x in 0..<size {
                    let sx = flip ? size - 1 - x : x
                    out[ch * plane + y * size + x] = (pixels[(y * size + sx) * c + source] - mean) * invStd
                }
            }
        }
    }

    /// One image as a (1, 3, size, size) tensor (e.g. for a reconstruction request).
    public func tensor(_ image: RGBImage, rng: inout RandomGenerator) -> Tensor {
        let t = Tensor(uninitialized: [1, 3, size, size])
        apply(image, rng: &rng, into: t.pointer)
        return t
    }

    /// The inverse of the normalisation: sample `index` of a (B, 3, H, W) tensor as an image.
    public func image(from batch: Tensor, index: Int) -> RGBImage {
        precondition(batch.rank == 4 && batch.shape[1] == 3 && index < batch.shape[0], "expected (B, 3, H, W), got \(batch.shape)")
        let h = batch.shape[2], w = batch.shape[3], plane = h * w
        let base = batch.pointer + index * 3 * plane
        var pixels = [Float](repeating: 0, count: plane * 3)
        for ch in 0..<3 {
            let mean = config.normalize ? config.mean[ch] : 0, std = config.normalize ? config.std[ch] : 1
            for p in 0..<plane { pixels[p * 3 + ch] = min(1, max(0, base[ch * plane + p] * std + mean)) }
        }
        return RGBImage(width: w, height: h, channels: 3, pixels: pixels)
    }

    /// torchvision's RandomResizedCrop.get_params: ten tries at a random area and log-uniform
    /// aspect ratio, then a centre crop clamped to the ratio range.
    func randomCrop(width: Int, height: Int, rng: inout RandomGenerator) -> (x: Double, y: Double, w: Double, h: Double) {
        let area = Double(width * height)
        let logLo = log(Double(config.ratio[0])), logHi = log(Double(config.ratio[1]))
        for _ in 0..<10 {
            let target = area * (Double(config.scale[0]) + Double(config.scale[1] - config.scale[0]) * rng.uniformDouble())
            let aspect = exp(logLo + (logHi - logLo) * rng.uniformDouble())
            let w = Int((target * aspect).squareRoot().rounded()), h = Int((target / aspect).squareRoot().rounded())
            if w > 0, h > 0, w <= width, h <= height {
                let y = Int(rng.next() % UInt64(height - h + 1)), x = Int(rng.next() % UInt64(width - w + 1))
                return (Double(x), Double(y), Double(w), Double(h))
            }
        }
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < Double(config.ratio[0]) {
            h = Int((Double(w) / Double(config.ratio[0])).rounded())
        } else if inRatio > Double(config.ratio[1]) {
            w = Int((Double(h) * Double(config.ratio[1])).rounded())
        }
        return (Double((width - w) / 2), Double((height - h) / 2), Double(w), Double(h))
    }

    /// Resize the shorter side to size / evalCropFraction, take the centre size × size: the
    /// same pixels as the box of that share of the shorter side, centred, resampled once.
    func centreCrop(width: Int, height: Int) -> (x: Double, y: Double, w: Double, h: Double) {
        let side = Double(min(width, height)) * Double(config.evalCropFraction)
        return ((Double(width) - side) / 2, (Double(height) - side) / 2, side, side)
    }
}
