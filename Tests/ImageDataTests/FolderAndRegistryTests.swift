import Foundation
import ImageData
import Testing
import TestSupport

/// A fresh temporary folder, removed when the value goes away.
final class TemporaryFolder {
    let path: String
    init() throws {
        path = Scratch.url("imagedata").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    func write(_ relative: String, _ bytes: [UInt8]) throws {
        let url = URL(fileURLWithPath: "\(path)/\(relative)")
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
    }
}

private func png(_ value: Float, size: Int = 6) throws -> [UInt8] {
    try PNGEncoder.encode(RGBImage(width: size, height: size, channels: 3, pixels: [Float](repeating: value, count: size * size * 3)))
}

/// The repository's Public/samples, found from this file's path.
let samplesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Public/samples").path

@Suite("Image folders")
struct ImageFolderTests {
    @Test func classSubfoldersGiveLabels() throws {
        let tmp = try TemporaryFolder()
        try tmp.write("dogs/a.png", try png(0.2))
        try tmp.write("dogs/b.JPG", try Fixtures.bytes("baseline.jpg"))
        try tmp.write("cats/c.png", try png(0.8))
        try tmp.write("cats/broken.png", Array(try png(0.8).prefix(30)))  // probes, fails to decode
        try tmp.write("cats/notes.txt", Array("not an image".utf8))
        try tmp.write("cats/fake.jpg", Array("not a jpeg".utf8))          // fails at the header
        let d = try ImageFolderDataset(root: tmp.path, id: "pets")
        #expect(d.info.classes == ["cats", "dogs"])
        #expect(d.count == 4 && d.info.decodeFailures == 1)
        #expect((0..<d.count).map { d.label(at: $0)! } == [0, 0, 1, 1])
        #expect(d.info.imageWidth == nil)  // 6 px PNGs and a 19 px JPEG
        #expect(try d.image(at: 1).pixels.allSatisfy { abs($0 - 0.8) < 0.003 })
        let broken = try #require((0..<d.count).first { d.path(at: $0).hasSuffix("broken.png") })
        #expect(throws: ImageError.truncated(.png)) { try d.image(at: broken) }
        #expect(d.info.decodeFailures == 2)
    }

    @Test func flatFolderIsUnlabelled() throws {
        let tmp = try TemporaryFolder()
        for i in 0..<3 { try tmp.write("img\(i).png", try png(Float(i) / 4)) }
        let d = try ImageFolderDataset(root: tmp.path, id: "flat")
        #expect(d.count == 3 && d.label(at: 0) == nil && d.info.classes.isEmpty)
        #expect(d.info.imageWidth == 6 && d.info.imageHeight == 6)
        let loader = try Loader(dataset: d, batchSize: 2, imageSize: 8, seed: 0)
        defer { loader.close() }
        #expect(try loader.next().labels == nil)
    }

    @Test func emptyOrMissingFoldersAreErrors() throws {
        let tmp = try TemporaryFolder()
        #expect(throws: DatasetError.noImages(path: tmp.path, failures: 0)) { try ImageFolderDataset(root: tmp.path, id: "x") }
        #expect(throws: DatasetError.self) { try ImageFolderDataset(root: tmp.path + "/missing", id: "x") }
    }

    @Test func samplePhotosDecode() throws {
        let d = try ImageFolderDataset(root: samplesDirectory, id: "samples", kind: .samples)
        #expect(d.count >= 5 && d.info.decodeFailures == 0)
        #expect(d.info.imageWidth == 224 && d.info.imageHeight == 224)
        for i in 0..<d.count { #expect(try d.image(at: i).width == 224) }
        let bytes = try FileManager.default.contentsOfDirectory(atPath: samplesDirectory).reduce(0) {
            $0 + ((try? FileManager.default.attributesOfItem(atPath: "\(samplesDirectory)/\($1)")[.size] as? Int) ?? 0)
        }
        #expect(bytes < 1_000_000)
        #expect(FileManager.default.fileExists(atPath: samplesDirectory + "/LICENSE.md"))
    }
}

@Suite("Dataset registry")
struct RegistryTests {
    @Test func listsBuiltInsAndFolders() throws {
        let tmp = try TemporaryFolder()
        try tmp.write("my-photos/a.png", try png(0.5))
        try tmp.write("Bad Name/a.png", try png(0.5))
        var config = DatasetRegistry.Configuration(foldersRoot: tmp.path, samplesDirectory: samplesDirectory)
        config.fashionMNISTDirectory = Fixtures.url("fashion-mini").path
        config.syntheticCount = 50
        let registry = DatasetRegistry(configuration: config)
        #expect(registry.ids() == ["synthetic", "fashion-mnist", "fashion-mnist-test", "samples", "my-photos"])
        let infos = registry.list()
        #expect(infos.map(\.id) == registry.ids())
        #expect(infos.first { $0.id == "fashion-mnist" }?.count == 6)
        #expect(infos.first { $0.id == "synthetic" }?.count == 50)
        #expect(infos.first { $0.id == "samples" }?.kind == .samples)
        #expect(try registry.open("my-photos").count == 1)
        #expect(try registry.folderPath(for: "new-set") == tmp.path + "/new-set")
    }

    @Test func unknownIDsAndBadNamesAreClearErrors() throws {
        var config = DatasetRegistry.Configuration()
        config.fashionMNISTDirectory = "/nonexistent"
        let registry = DatasetRegistry(configuration: config)
        #expect(registry.ids() == ["synthetic"])
        #expect(throws: DatasetError.unknownDataset("imagenet", available: ["synthetic"])) { try registry.open("imagenet") }
        #expect(throws: DatasetError.self) { try registry.open("fashion-mnist") }
        #expect(DatasetError.unknownDataset("imagenet", available: ["synthetic"]).description
            == "unknown dataset 'imagenet'; available: synthetic")
        #expect(throws: DatasetError.invalidID("Bad Name")) { try DatasetRegistry.validate(id: "Bad Name") }
        #expect(throws: DatasetError.reservedID("samples")) { try DatasetRegistry.validate(id: "samples") }
    }
}
