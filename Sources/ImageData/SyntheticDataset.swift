import TensorCore

/// Seeded procedural images in ten classes (shapes, stripes, checkers, gradients, textures)
/// with random colours, placement and pixel noise. Image i depends only on (seed, i), is made
/// on demand at any size, and takes microseconds: for tests, demos and benchmarks.
public struct SyntheticDataset: ImageDataset {
    public static let classNames = ["disc", "square", "triangle", "ring", "horizontal-stripes", "vertical-stripes",
                                    "diagonal-stripes", "checkerboard", "gradient", "blobs"]

    public let count: Int
    public let imageSize: Int
    public let seed: UInt64
    public let id: String

    public init(count: Int = 10_000, imageSize: Int = 64, seed: UInt64 = 0, id: String = "synthetic") {
        precondition(count > 0 && imageSize >= 4, "synthetic dataset needs count > 0 and size ≥ 4, got \(count), \(imageSize)")
        self.count = count
        self.imageSize = imageSize
        self.seed = seed
        self.id = id
    }

    public var info: DatasetInfo {
        DatasetInfo(id: id, kind: .synthetic, name: "Synthetic shapes and textures (\(imageSize) px)", count: count,
                    classes: Self.classNames, imageWidth: imageSize, imageHeight: imageSize, channels: 3,
                    licence: "generated on the fly (no licence needed)")
    }

    /// Classes cycle with the index, so every class has the same share.
    public func label(at index: Int) -> Int? { index % Self.classNames.count }

    public func image(at index: Int) -> RGBImage {
        precondition(index >= 0 && index < count, "index \(index) out of 0..<\(count)")
        var rng = SeedStream.synthetic.generator(seed: seed, index: index)
        let n = imageSize
        let fg = Self.colour(&rng), bg = Self.contrasting(fg, &rng)
        let cx = 0.3 + 0.4 * rng.uniform(), cy = 0.3 + 0.4 * rng.uniform(), r = 0.15 + 0.2 * rng.uniform()
        let frequency = 2 + 6 * rng.uniform(), angle = Float.pi * rng.uniform()
        let noise = 0.02 + 0.06 * rng.uniform()
        let blobs = (0..<4).map { _ in (rng.uniform(), rng.uniform(), 0.05 + 0.1 * rng.uniform()) }
        let shape = Shape(kind: index % Self.classNames.count, cx: cx, cy: cy, r: r, frequency: frequency,
                          cosA: cosf(angle), sinA: sinf(angle), blobs: blobs)

        var pixels = [Float](repeating: 0, count: n * n * 3)
        for y in 0..<n {
            let v = (Float(y) + 0.5) / Float(n)
            for x in 0..<n {
                let u = (Float(x) + 0.5) / Float(n)
                let t = shape.coverage(u, v)  // 0 = background, 1 = foreground
                for c in 0..<3 {
                    let jitter = noise * (rng.uniform() - 0.5)
                    pixels[(y * n + x) * 3 + c] = min(1, max(0, bg[c] + (fg[c] - bg[c]) * t + jitter))
                }
            }
        }
        return RGBImage(width: n, height: n, channels: 3, pixels: pixels)
    }

    private static func colour(_ rng: inout RandomGenerator) -> [Float] { (0..<3).map { _ in rng.uniform() } }

    /// A background far enough from the foreground that the pattern stays visible.
    private static func contrasting(_ fg: [Float], _ rng: inout RandomGenerator) -> [Float] {
        var bg = colour(&rng)
        for _ in 0..<8 where zip(fg, bg).map({ abs($0 - $1) }).reduce(0, +) < 0.6 { bg = colour(&rng) }
        return bg
    }
}

/// The per-class pattern: coverage in 0…1 at normalised coordinates (u, v).
private struct Shape {
    let kind: Int
    let cx: Float, cy: Float, r: Float
    let frequency: Float, cosA: Float, sinA: Float
    let blobs: [(Float, Float, Float)]

    func coverage(_ u: Float, _ v: Float) -> Float {
        let dx = u - cx, dy = v - cy
        switch kind {
        case 0: return dx * dx + dy * dy < r * r ? 1 : 0
        case 1: return max(abs(dx), abs(dy)) < r ? 1 : 0
        case 2: return dy > -r && dy < r && abs(dx) < (dy + r) / 2 ? 1 : 0
        case 3:
            let d = (dx * dx + dy * dy).squareRoot()
            return d < r && d > r * 0.6 ? 1 : 0
        case 4: return stripe(v)
        case 5: return stripe(u)
        case 6: return stripe(u * cosA + v * sinA)
        case 7: return (Int(u * frequency) + Int(v * frequency)) % 2 == 0 ? 1 : 0
        case 8: return min(1, max(0, 0.5 + (u - 0.5) * cosA + (v - 0.5) * sinA))
        default:
            return blobs.contains { bx, by, br in (u - bx) * (u - bx) + (v - by) * (v - by) < br * br } ? 1 : 0
        }
    }

    private func stripe(_ s: Float) -> Float { Int((s * frequency * 2).rounded(.down)) % 2 == 0 ? 1 : 0 }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
