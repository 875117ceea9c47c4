/// A decoded image: `Float` samples in 0…1, row-major and channel-interleaved (HWC: the
/// samples of pixel (x, y) are `pixels[(y * width + x) * channels + c]`).
///
/// `channels` is 3 (R, G, B) or 1 (gray). Gray images keep one channel until the transform
/// replicates it into the batch's three planes: for Fashion-MNIST that is a third of the
/// resampling work. Alpha is always dropped (like `convert("RGB")` in PIL / torchvision).
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let channels: Int
    public var pixels: [Float]

    public init(width: Int, height: Int, channels: Int, pixels: [Float]) {
        precondition(channels == 1 || channels == 3, "an image has 1 or 3 channels, not \(channels)")
        precondition(width > 0 && height > 0 && pixels.count == width * height * channels,
                     "\(pixels.count) samples for \(width)×\(height)×\(channels)")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// From 8-bit samples (interleaved, `channels` per pixel), each divided by 255.
    public init(width: Int, height: Int, channels: Int, bytes: UnsafeBufferPointer<UInt8>) {
        let pixels = [Float](unsafeUninitializedCapacity: bytes.count) { out, n in
            for i in 0..<bytes.count { out[i] = Float(bytes[i]) / 255 }
            n = bytes.count
        }
        self.init(width: width, height: height, channels: channels, pixels: pixels)
    }

    public var isGray: Bool { channels == 1 }

    /// The sample of channel `c` at (x, y).
    public subscript(x: Int, y: Int, c: Int) -> Float { pixels[(y * width + x) * channels + c] }

    /// The same picture with three channels (gray replicated).
    public func rgb() -> RGBImage {
        if channels == 3 { return self }
        var out = [Float](repeating: 0, count: pixels.count * 3)
        for i in 0..<pixels.count { out[3 * i] = pixels[i]; out[3 * i + 1] = pixels[i]; out[3 * i + 2] = pixels[i] }
        return RGBImage(width: width, height: height, channels: 3, pixels: out)
    }

    /// 8-bit samples, rounded and clamped (what `PNGEncoder` writes).
    public func bytes() -> [UInt8] {
        pixels.map { UInt8((min(max($0, 0), 1) * 255).rounded()) }
    }
}
