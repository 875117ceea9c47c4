import Foundation
@testable import ImageData
import Testing

@Suite("Fashion-MNIST and IDX")
struct FashionMNISTTests {
    private func expected(_ prefix: String, count: Int) throws -> (images: [UInt8], labels: [UInt8]) {
        let raw = try Fixtures.bytes("fashion-mini/\(prefix).expected")
        return (Array(raw[0..<(count * 784)]), Array(raw[(count * 784)...]))
    }

    @Test("reads the IDX gzip fixture", arguments: [(FashionMNIST.Split.train, 6), (.test, 3)])
    func miniature(_ split: FashionMNIST.Split, _ count: Int) throws {
        let d = try FashionMNIST(split: split, directory: Fixtures.url("fashion-mini").path)
        let want = try expected(split == .train ? "train" : "t10k", count: count)
        #expect(d.count == count && d.info.classes.count == 10 && d.info.channels == 1)
        #expect(d.info.id == (split == .train ? "fashion-mnist" : "fashion-mnist-test"))
        for i in 0..<count {
            let img = d.image(at: i)
            #expect(img.width == 28 && img.height == 28 && img.channels == 1)
            #expect(img.pixels == want.images[(i * 784)..<((i + 1) * 784)].map { Float($0) / 255 })
            #expect(d.label(at: i) == Int(want.labels[i]))
        }
    }

    @Test func missingFilesSayHowToInstall() {
        #expect(!FashionMNIST.isInstalled(directory: "/nonexistent"))
        do {
            _ = try FashionMNIST(split: .train, directory: "/nonexistent")
            Issue.record("expected notInstalled")
        } catch {
            #expect(error.description.contains("dataset-fashion-mnist"))
        }
    }

    @Test func damagedIDXIsATypedError() throws {
        let tmp = try TemporaryFolder()
        let good = try Fixtures.bytes("fashion-mini/train-images-idx3-ubyte.gz")
        try tmp.write("truncated.gz", Array(good.prefix(good.count / 2)))
        #expect(throws: DatasetError.self) { try IDXFile(gzipPath: tmp.path + "/truncated.gz") }
        try tmp.write("plain.gz", Array("hello".utf8))
        #expect(throws: DatasetError.self) { try IDXFile(gzipPath: tmp.path + "/plain.gz") }
        #expect(throws: DatasetError.self) { try IDXFile([0, 0, 8, 1, 0, 0, 0, 9, 1, 2], path: "short") }
        #expect(throws: DatasetError.self) { try IDXFile([0, 0, 0x0D, 1, 0, 0, 0, 1, 1], path: "float") }
        #expect(try IDXFile([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 1, 7, 9], path: "ok").bytes == [7, 9])
    }

    @Test("the real dataset, when dataset-fashion-mnist is installed",
          .enabled(if: FashionMNIST.isInstalled(), "needs the Debian package dataset-fashion-mnist"))
    func installed() throws {
        let train = try FashionMNIST(split: .train), test = try FashionMNIST(split: .test)
        #expect(train.count == 60_000 && test.count == 10_000)
        #expect(train.info.imageWidth == 28 && train.info.imageHeight == 28)
        var perClass = [Int](repeating: 0, count: 10)
        for i in 0..<test.count { perClass[test.label(at: i)!] += 1 }
        #expect(perClass == [Int](repeating: 1000, count: 10))
        let loader = try Loader(dataset: train, batchSize: 8, imageSize: 32, seed: 1)
        defer { loader.close() }
        #expect(try loader.next().images.shape == [8, 3, 32, 32])
    }
}
