import Foundation
import ImageData
import Testing

@Suite("Synthetic dataset")
struct SyntheticDatasetTests {
    @Test func deterministicLabelledAnySize() {
        let d = SyntheticDataset(count: 30, imageSize: 17, seed: 1)
        #expect(d.image(at: 5) == d.image(at: 5))
        #expect(d.image(at: 5) != SyntheticDataset(count: 30, imageSize: 17, seed: 2).image(at: 5))
        #expect(d.image(at: 5) != d.image(at: 15))
        let img = d.image(at: 29)
        #expect(img.width == 17 && img.height == 17 && img.channels == 3)
        #expect(img.pixels.allSatisfy { (0...1).contains($0) })
        #expect((0..<30).map { d.label(at: $0)! } == (0..<30).map { $0 % 10 })
    }

    @Test func everyClassShowsSomething() {
        let d = SyntheticDataset(count: 10, imageSize: 32, seed: 7)
        for i in 0..<10 {
            let p = d.image(at: i).pixels
            let mean = p.reduce(0, +) / Float(p.count)
            let spread = p.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(p.count)
            #expect(spread > 0.005, "class \(SyntheticDataset.classNames[i]) is flat")
        }
    }

    @Test func infoIsSnakeCaseJSON() throws {
        let json = String(decoding: try JSONEncoder().encode(SyntheticDataset(count: 5, imageSize: 8).info), as: UTF8.self)
        #expect(json.contains(#""image_width":8"#) && json.contains(#""decode_failures":0"#) && json.contains(#""kind":"synthetic""#))
        let back = try JSONDecoder().decode(DatasetInfo.self, from: Data(json.utf8))
        #expect(back == SyntheticDataset(count: 5, imageSize: 8).info)
    }
}
