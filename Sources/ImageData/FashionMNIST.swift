import Foundation

/// Fashion-MNIST (Zalando Research, MIT licence): 28×28 gray clothing images in 10 classes,
/// 60 000 for training and 10 000 for testing, read from the IDX gzip files that Debian's
/// `dataset-fashion-mnist` package installs in `/usr/share/datasets/fashion-mnist`.
/// Everything is decompressed into memory at open (47 MB for the training split).
public struct FashionMNIST: ImageDataset {
    public enum Split: String, Sendable, CaseIterable {
        case train, test
        var filePrefix: String { self == .train ? "train" : "t10k" }
    }

    public static let defaultDirectory = "/usr/share/datasets/fashion-mnist"
    public static let classNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                    "Sneaker", "Bag", "Ankle boot"]
    public static let licence = "MIT (Zalando Research); Debian package dataset-fashion-mnist"

    public let split: Split
    public let width: Int
    public let height: Int
    private let pixels: [UInt8]
    private let labels: [UInt8]

    public static func isInstalled(directory: String = defaultDirectory) -> Bool {
        Split.allCases.allSatisfy { split in
            let files = split.files(in: directory)
            return FileManager.default.isReadableFile(atPath: files.images)
                && FileManager.default.isReadableFile(atPath: files.labels)
        }
    }

    public init(split: Split, directory: String = defaultDirectory) throws(DatasetError) {
        let (imagePath, labelPath) = split.files(in: directory)
        guard FileManager.default.isReadableFile(atPath: imagePath), FileManager.default.isReadableFile(atPath: labelPath) else {
            throw .notInstalled(split == .train ? "fashion-mnist" : "fashion-mnist-test",
                                hint: "no \(imagePath); install the Debian package dataset-fashion-mnist (make run does)")
        }
        let images = try IDXFile(gzipPath: imagePath), labels = try IDXFile(gzipPath: labelPath)
        guard images.dimensions.count == 3 else {
            throw .invalidIDX(path: imagePath, reason: "images need 3 dimensions, found \(images.dimensions)")
        }
        guard labels.dimensions == [images.dimensions[0]] else {
            throw .invalidIDX(path: labelPath, reason: "\(labels.dimensions) labels for \(images.dimensions[0]) images")
        }
        guard labels.bytes.allSatisfy({ Int($0) < Self.classNames.count }) else {
            throw .invalidIDX(path: labelPath, reason: "a label is outside 0…9")
        }
        self.split = split
        height = images.dimensions[1]
        width = images.dimensions[2]
        pixels = images.bytes
        self.labels = labels.bytes
    }

    public var count: Int { labels.count }

    public var info: DatasetInfo {
        DatasetInfo(id: split == .train ? "fashion-mnist" : "fashion-mnist-test", kind: .fashionMNIST,
                    name: "Fashion-MNIST (\(split.rawValue))", count: count, classes: Self.classNames,
                    imageWidth: width, imageHeight: height, channels: 1, licence: Self.licence)
    }

    public func image(at index: Int) -> RGBImage {
        precondition(index >= 0 && index < count, "index \(index) out of 0..<\(count)")
        let n = width * height
        return pixels.withUnsafeBufferPointer { p in
            RGBImage(width: width, height: height, channels: 1, bytes: UnsafeBufferPointer(rebasing: p[(index * n)..<((index + 1) * n)]))
        }
    }

    public func label(at index: Int) -> Int? { Int(labels[index]) }
}

extension FashionMNIST.Split {
    func files(in directory: String) -> (images: String, labels: String) {
        ("\(directory)/\(filePrefix)-images-idx3-ubyte.gz", "\(directory)/\(filePrefix)-labels-idx1-ubyte.gz")
    }
}
