import Foundation
import ImageData
import Testing

@Suite("Codecs against Pillow fixtures")
struct CodecTests {
    @Test("manifest lists every codec path") func manifest() {
        #expect(CodecFixture.of(kind: "png").count >= 11)
        #expect(CodecFixture.of(kind: "jpeg").count >= 5)
    }

    @Test("PNG decodes pixel-exact", arguments: CodecFixture.of(kind: "png"))
    func png(_ f: CodecFixture) throws { try compare(f) }

    @Test("JPEG decodes within the fixture's tolerance", arguments: CodecFixture.of(kind: "jpeg"))
    func jpeg(_ f: CodecFixture) throws { try compare(f) }

    @Test("probe reads the header only", arguments: CodecFixture.all)
    func probe(_ f: CodecFixture) throws {
        let header = try ImageCodec.probe(try Fixtures.bytes(f.file))
        #expect(header.format == (f.kind == "png" ? .png : .jpeg))
        #expect(header.width == f.width && header.height == f.height && header.channels == f.channels)
    }

    private func compare(_ f: CodecFixture) throws {
        let image = try ImageCodec.decode(try Fixtures.bytes(f.file))
        #expect(image.width == f.width && image.height == f.height && image.channels == f.channels)
        let raw = try Fixtures.bytes(f.file + ".expected")
        // 8-bit fixtures hold one byte a sample, 16-bit ones two (little-endian).
        let expected: [Int] = f.bits == 16
            ? stride(from: 0, to: raw.count, by: 2).map { Int(raw[$0]) | Int(raw[$0 + 1]) << 8 }
            : raw.map(Int.init)
        try #require(expected.count == image.pixels.count)
        let top = Float((1 << f.bits) - 1)
        var worst = 0, at = 0
        for (i, v) in image.pixels.enumerated() {
            let d = abs(Int((v * top).rounded()) - expected[i])
            if d > worst { worst = d; at = i }
        }
        #expect(worst <= f.tolerance, "\(f.file): max difference \(worst)/\(Int(top)) at sample \(at)")
    }
}
