import Foundation
import Synchronization

/// The datasets a server offers, by id:
/// - `synthetic` always;
/// - `fashion-mnist` and `fashion-mnist-test` when Debian's dataset-fashion-mnist is installed;
/// - `samples`, the sample photos folder (`Public/samples`), when configured and present;
/// - every subfolder of `foldersRoot` (image folders registered under the data root), with the
///   subfolder's name as id.
///
/// Opened datasets are cached: a folder is scanned once, Fashion-MNIST decompressed once.
public final class DatasetRegistry: Sendable {
    /// Configuration keys, each with its default.
    public struct Configuration: Sendable {
        /// Folder whose subfolders are registered image-folder datasets. Default nil (none).
        public var foldersRoot: String?
        /// The sample photos folder. Default nil (no `samples` dataset).
        public var samplesDirectory: String?
        /// Where the Fashion-MNIST IDX files are. Default Debian's `/usr/share/datasets/fashion-mnist`.
        public var fashionMNISTDirectory = FashionMNIST.defaultDirectory
        /// Size of the `synthetic` dataset: images, side in pixels, seed. Default 10 000 × 64 px, seed 0.
        public var syntheticCount = 10_000
        public var syntheticImageSize = 64
        public var syntheticSeed: UInt64 = 0

        public init(foldersRoot: String? = nil, samplesDirectory: String? = nil) {
            self.foldersRoot = foldersRoot
            self.samplesDirectory = samplesDirectory
        }
    }

    public static let builtInIDs = ["synthetic", "fashion-mnist", "fashion-mnist-test", "samples"]
    public static let samplesLicence = "CC0 / public domain (scikit-image's bundled data); see Public/samples/LICENSE.md"

    public let configuration: Configuration
    private let cache = Mutex<[String: any ImageDataset]>([:])

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    /// Ids of every dataset that can be opened now (built-ins first, then folders, sorted).
    public func ids() -> [String] {
        var ids = ["synthetic"]
        if FashionMNIST.isInstalled(directory: configuration.fashionMNISTDirectory) {
            ids += ["fashion-mnist", "fashion-mnist-test"]
        }
        if let samples = configuration.samplesDirectory, Self.isDirectory(samples) { ids.append("samples") }
        return ids + registeredFolderIDs()
    }

    /// Information about every dataset that opens (one that fails, e.g. an empty folder, is left out).
    public func list() -> [DatasetInfo] {
        ids().compactMap { try? open($0).info }
    }

    /// Whether `id` opens: a listed dataset, or the `val/` split of a folder dataset (`X/val`).
    public func exists(_ id: String) -> Bool {
        if let base = Self.validationBase(id) {
            guard registeredFolderIDs().contains(base), let root = configuration.foldersRoot else { return false }
            return Self.isDirectory("\(root)/\(base)/val")
        }
        return ids().contains(id)
    }

    /// `X` for `X/val`, else nil.
    static func validationBase(_ id: String) -> String? {
        id.hasSuffix("/val") ? String(id.dropLast(4)) : nil
    }

    /// The dataset with this id, opened once and cached.
    public func open(_ id: String) throws(DatasetError) -> any ImageDataset {
        if let hit = cache.withLock({ $0[id] }) { return hit }
        let dataset = try make(id)
        cache.withLock { $0[id] = dataset }
        return dataset
    }

    /// Where a folder dataset with this id lives (to register one, create it and put images there).
    public func folderPath(for id: String) throws(DatasetError) -> String {
        try Self.validate(id: id)
        guard let root = configuration.foldersRoot else {
            throw .unreadable(path: "(none)", reason: "no folder for registered datasets is configured")
        }
        return "\(root)/\(id)"
    }

    /// Drops a cached dataset so the next `open` scans its folder again.
    public func forget(_ id: String) { _ = cache.withLock { $0.removeValue(forKey: id) } }

    /// Lowercase letters, digits, `-` and `_`, 1–64 characters, not a built-in's id.
    public static func validate(id: String) throws(DatasetError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789-_")
        guard (1...64).contains(id.count), id.allSatisfy({ allowed.contains($0) }), id.first != "-" else {
            throw .invalidID(id)
        }
        if builtInIDs.contains(id) { throw .reservedID(id) }
    }

    private func make(_ id: String) throws(DatasetError) -> any ImageDataset {
        let c = configuration
        switch id {
        case "synthetic":
            return SyntheticDataset(count: c.syntheticCount, imageSize: c.syntheticImageSize, seed: c.syntheticSeed)
        case "fashion-mnist": return try FashionMNIST(split: .train, directory: c.fashionMNISTDirectory)
        case "fashion-mnist-test": return try FashionMNIST(split: .test, directory: c.fashionMNISTDirectory)
        case "samples":
            guard let dir = c.samplesDirectory, Self.isDirectory(dir) else { throw unknown(id) }
            return try ImageFolderDataset(root: dir, id: "samples", name: "Sample photos", kind: .samples,
                                          licence: Self.samplesLicence)
        case _ where Self.validationBase(id) != nil:
            // A folder's held-out split: `val/` with class subfolders named like the folder's own,
            // labelled in the folder's class order.
            let base = Self.validationBase(id)!
            guard exists(id), let root = c.foldersRoot else { throw unknown(id) }
            let classes = try open(base).info.classes
            return try ImageFolderDataset(root: "\(root)/\(base)/val", id: id, classOrder: classes)
        default:
            guard registeredFolderIDs().contains(id), let root = c.foldersRoot else { throw unknown(id) }
            return try ImageFolderDataset(root: "\(root)/\(id)", id: id)
        }
    }

    private func unknown(_ id: String) -> DatasetError { .unknownDataset(id, available: ids()) }

    private func registeredFolderIDs() -> [String] {
        guard let root = configuration.foldersRoot,
              let entries = try? FileManager.default.contentsOfDirectory(atPath: root) else { return [] }
        return entries.filter { (try? Self.validate(id: $0)) != nil && Self.isDirectory("\(root)/\($0)") }.sorted()
    }

    private static func isDirectory(_ path: String) -> Bool {
        var dir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &dir) && dir.boolValue
    }
}
