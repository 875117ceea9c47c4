/// Separable resampling of a source box to an output grid, PIL-style: the filter widens by
/// the downscale factor (antialiasing), taps outside the image are dropped and the rest
/// renormalised. Bicubic uses a = −0.5 like PIL and torchvision's PIL path.
struct ResampleAxis {
    let first: [Int]      // first source index of each output sample
    let taps: Int         // weights per output sample (padded with zeros)
    let weights: [Float]  // output-major, `taps` each

    /// `start` and `length` give the box in source pixels (edges, not centres).
    init(sourceSize: Int, start: Double, length: Double, outputSize: Int, filter: AugmentationConfig.Interpolation) {
        let support: Double = filter == .bicubic ? 2 : 1
        let scale = length / Double(outputSize)
        let widen = max(scale, 1)
        let reach = support * widen
        let taps = Int((reach * 2).rounded(.up)) + 1
        var first = [Int](repeating: 0, count: outputSize)
        var weights = [Float](repeating: 0, count: outputSize * taps)
        for i in 0..<outputSize {
            let centre = start + (Double(i) + 0.5) * scale
            let lo = max(0, Int((centre - reach).rounded(.down))), hi = min(sourceSize, Int((centre + reach).rounded(.up)))
            var w = [Double](repeating: 0, count: taps), total = 0.0
            for k in lo..<max(lo, min(hi, lo + taps)) {
                let x = (Double(k) + 0.5 - centre) / widen
                let value = filter == .bicubic ? Self.cubic(x) : max(0, 1 - abs(x))
                w[k - lo] = value
                total += value
            }
            first[i] = lo
            for t in 0..<taps { weights[i * taps + t] = total != 0 ? Float(w[t] / total) : (t == 0 ? 1 : 0) }
        }
        self.first = first
        self.taps = taps
        self.weights = weights
    }

    private static func cubic(_ x: Double) -> Double {
        let a = -0.5, x = abs(x)
        if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return ((x - 5) * x + 8) * x * a - 4 * a }
        return 0
    }
}

/// Crops the box (x, y, w, h) out of `image` and resizes it to `outputWidth × outputHeight`.
/// Returns interleaved samples with the image's channel count, clamped to 0…1.
func resample(_ image: RGBImage, box: (x: Double, y: Double, w: Double, h: Double), outputWidth: Int,
              outputHeight: Int, filter: AugmentationConfig.Interpolation) -> [Float] {
    let c = image.channels
    let ax = ResampleAxis(sourceSize: image.width, start: box.x, length: box.w, outputSize: outputWidth, filter: filter)
    let ay = ResampleAxis(sourceSize: image.height, start: box.y, length: box.h, outputSize: outputHeight, filter: filter)
    // Horizontal pass over the source rows the vertical pass will read.
    let rowLo = ay.first.min() ?? 0, rowHi = min(image.height, (ay.first.max() ?? 0) + ay.taps)
    var rows = [Float](repeating: 0, count: (rowHi - rowLo) * outputWidth * c)
    image.pixels.withUnsafeBufferPointer { src in
        rows.withUnsafeMutableBufferPointer { dst in
            for y in rowLo..<rowHi {
                let s = y * image.width * c, d = (y - rowLo) * outputWidth * c
                for x in 0..<outputWidth {
                    let f = ax.first[x], wBase = x * ax.taps
                    let n = min(ax.taps, image.width - f)
                    for ch in 0..<c {
                        var acc: Float = 0
                        for t in 0..<n { acc += ax.weights[wBase + t] * src[s + (f + t) * c + ch] }
                        dst[d + x * c + ch] = acc
                    }
                }
            }
        }
    }
    var out = [Float](repeating: 0, count: outputWidth * outputHeight * c)
    let stride = outputWidth * c
    for y in 0..<outputHeight {
        let f = ay.first[y] - rowLo, wBase = y * ay.taps
        let n = min(ay.taps, rowHi - ay.first[y])
        for t in 0..<n {
            let w = ay.weights[wBase + t], r = (f + t) * stride
            for i in 0..<stride { out[y * stride + i] += w * rows[r + i] }
        }
        for i in 0..<stride { out[y * stride + i] = min(1, max(0, out[y * stride + i])) }
    }
    return out
}
