import Foundation
import Testing

/// One entry of Fixtures/manifest.json (written by Tools/fixtures/make_codec_fixtures.py).
struct CodecFixture: Decodable, CustomTestStringConvertible {
    let file: String
    let kind: String
    let width: Int
    let height: Int
    let channels: Int
    let tolerance: Int
    /// Bits per expected sample: 8 or 16.
    let bits: Int

    var testDescription: String { file }

    static let all: [CodecFixture] = {
        guard let data = try? Data(contentsOf: Fixtures.url("manifest.json")) else { return [] }
        return (try? JSONDecoder().decode([CodecFixture].self, from: data)) ?? []
    }()

    static func of(kind: String) -> [CodecFixture] { all.filter { $0.kind == kind } }
}

enum Fixtures {
    static let directory: URL = Bundle.module.resourceURL!.appendingPathComponent("Fixtures")

    static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }

    static func bytes(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: url(name))) }
}
