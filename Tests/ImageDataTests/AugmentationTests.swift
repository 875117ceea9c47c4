import Foundation
import ImageData
import Testing
import TensorCore

@Suite("Augmentation")
struct AugmentationTests {
    let photo = SyntheticDataset(count: 4, imageSize: 40, seed: 3).image(at: 1)

    private func run(_ t: ImageTransform, _ image: RGBImage, seed: UInt64) -> [Float] {
        var rng = RandomGenerator(seed: seed)
        return t.tensor(image, rng: &rng).scalars
    }

    @Test func configDecodesSnakeCaseWithDefaults() throws {
        let json = #"{"hflip_probability": 0, "scale": [0.5, 1], "interpolation": "bilinear"}"#
        let c = try JSONDecoder().decode(AugmentationConfig.self, from: Data(json.utf8))
        #expect(c.hflipProbability == 0 && c.scale == [0.5, 1] && c.interpolation == .bilinear)
        #expect(c.ratio == AugmentationConfig().ratio && c.mean == AugmentationConfig.imageNetMean && c.normalize)
        let keys = try JSONSerialization.jsonObject(with: JSONEncoder().encode(c)) as! [String: Any]
        #expect(Set(keys.keys) == ["random_resized_crop", "scale", "ratio", "interpolation", "hflip_probability",
                                   "eval_crop_fraction", "normalize", "mean", "std"])
    }

    @Test func validationNamesTheFields() {
        var c = AugmentationConfig()
        c.scale = [0.8, 0.2]; c.hflipProbability = 2; c.std = [1, 0, 1]
        #expect(c.validationErrors().map(\.field) == ["scale", "hflip_probability", "std"])
        #expect(AugmentationConfig().validationErrors().isEmpty)
    }

    @Test("identity resize keeps the pixels", arguments: [AugmentationConfig.Interpolation.bilinear, .bicubic])
    func identity(_ filter: AugmentationConfig.Interpolation) {
        var c = AugmentationConfig()
        c.randomResizedCrop = false; c.hflipProbability = 0; c.normalize = false; c.interpolation = filter
        let out = run(ImageTransform(c, size: 40, mode: .train), photo, seed: 1)
        let planar = (0..<3).flatMap { ch in (0..<(40 * 40)).map { photo.pixels[$0 * 3 + ch] } }
        #expect(zip(out, planar).allSatisfy { abs($0 - $1) < 1e-5 })
    }

    @Test func normalisesAndReplicatesGray() {
        let gray = RGBImage(width: 9, height: 7, channels: 1, pixels: [Float](repeating: 0.5, count: 63))
        let out = run(ImageTransform(AugmentationConfig(), size: 8, mode: .train), gray, seed: 2)
        #expect(out.count == 3 * 64)
        for ch in 0..<3 {
            let want = (0.5 - AugmentationConfig.imageNetMean[ch]) / AugmentationConfig.imageNetStd[ch]
            #expect(out[(ch * 64)..<((ch + 1) * 64)].allSatisfy { abs($0 - want) < 1e-4 })
        }
    }

    @Test func trainingIsSeededAndVaried() {
        let t = ImageTransform(AugmentationConfig(), size: 24, mode: .train)
        #expect(run(t, photo, seed: 5) == run(t, photo, seed: 5))
        #expect(run(t, photo, seed: 5) != run(t, photo, seed: 6))
    }

    @Test func flipMirrorsTheSameCrop() {
        var c = AugmentationConfig()
        c.hflipProbability = 0
        let plain = run(ImageTransform(c, size: 16, mode: .train), photo, seed: 9)
        c.hflipProbability = 1
        let flipped = run(ImageTransform(c, size: 16, mode: .train), photo, seed: 9)
        for ch in 0..<3 {
            for y in 0..<16 {
                for x in 0..<16 { #expect(flipped[ch * 256 + y * 16 + x] == plain[ch * 256 + y * 16 + 15 - x]) }
            }
        }
    }

    @Test func evalIsDeterministicCentreCrop() {
        var c = AugmentationConfig()
        c.normalize = false; c.evalCropFraction = 1; c.interpolation = .bilinear
        let wide = RGBImage(width: 60, height: 40, channels: 1,
                            pixels: (0..<2400).map { Float($0 % 60 < 10 || $0 % 60 >= 50 ? 1 : 0) })
        let t = ImageTransform(c, size: 40, mode: .eval)
        let a = run(t, wide, seed: 1), b = run(t, wide, seed: 2)
        #expect(a == b)
        #expect(a.allSatisfy { $0 == 0 })  // the 40 px centre of 60 avoids the white side bands
    }

    @Test func downscaleAntialiasesAConstantToItself() {
        let flat = RGBImage(width: 97, height: 61, channels: 3, pixels: [Float](repeating: 0.25, count: 97 * 61 * 3))
        var c = AugmentationConfig()
        c.normalize = false
        let out = run(ImageTransform(c, size: 13, mode: .train), flat, seed: 4)
        #expect(out.allSatisfy { abs($0 - 0.25) < 1e-5 })
    }

    @Test func denormalisesBackToAnImage() {
        var c = AugmentationConfig()
        c.randomResizedCrop = false; c.hflipProbability = 0
        let t = ImageTransform(c, size: 40, mode: .train)
        var rng = RandomGenerator(seed: 0)
        let back = t.image(from: t.tensor(photo, rng: &rng), index: 0)
        #expect(zip(back.pixels, photo.pixels).allSatisfy { abs($0 - $1) < 1e-4 })
    }
}
