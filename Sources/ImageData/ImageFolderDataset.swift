import Foundation
import Synchronization

/// PNG and JPEG files in a folder. `root/<class>/*.png|jpg|jpeg` gives labelled images, the
/// classes being the subfolder names in sorted order (torchvision's ImageFolder layout); a
/// folder without such subfolders gives its own files, unlabelled.
///
/// Opening reads every file's header: files that are not PNG/JPEG, are damaged in the header
/// or exceed the pixel cap are counted in `decode_failures` and left out. A file that fails
/// later, during a full decode, is counted too and the loader takes a neighbour instead.
public final class ImageFolderDataset: ImageDataset {
    public static let extensions: Set<String> = ["png", "jpg", "jpeg"]

    public let root: String
    public let maxPixels: Int
    private let files: [(path: String, label: Int?)]
    private let baseInfo: DatasetInfo
    private let laterFailures = Atomic<Int>(0)

    /// `classOrder`: label class folders by their place in this list (a held-out split labelled
    /// like its training folder); folders not in it are left out.
    public init(root: String, id: String, name: String? = nil, kind: DatasetInfo.Kind = .imageFolder,
                licence: String = "as provided by the folder's owner", maxPixels: Int = ImageCodec.defaultMaxPixels,
                classOrder: [String]? = nil)
        throws(DatasetError) {
        self.root = root
        self.maxPixels = maxPixels
        let fm = FileManager.default
        let entries: [String]
        do { entries = try fm.contentsOfDirectory(atPath: root).filter { !$0.hasPrefix(".") }.sorted() } catch {
            throw .unreadable(path: root, reason: error.localizedDescription)
        }
        func isDirectory(_ path: String) -> Bool {
            var dir: ObjCBool = false
            return fm.fileExists(atPath: path, isDirectory: &dir) && dir.boolValue
        }
        func images(in folder: String) -> [String] {
            ((try? fm.contentsOfDirectory(atPath: folder)) ?? []).filter {
                !$0.hasPrefix(".") && Self.extensions.contains(($0 as NSString).pathExtension.lowercased())
            }.sorted().map { "\(folder)/\($0)" }
        }
        let found = entries.filter { isDirectory("\(root)/\($0)") && !images(in: "\(root)/\($0)").isEmpty }
        let classFolders = classOrder ?? found
        let candidates: [(String, Int?)] = classFolders.isEmpty
            ? images(in: root).map { ($0, nil) }
            : classFolders.enumerated().flatMap { label, folder in
                found.contains(folder) ? images(in: "\(root)/\(folder)").map { ($0, label) } : []
            }

        var kept: [(path: String, label: Int?)] = []
        var sizes = Set<[Int]>(), channels = 1, failures = 0
        for (path, label) in candidates {
            guard let bytes = fm.contents(atPath: path), let header = try? ImageCodec.probe([UInt8](bytes)),
                  header.width > 0, header.height > 0, header.pixelCount <= maxPixels else {
                failures += 1
                continue
            }
            kept.append((path, label))
            sizes.insert([header.width, header.height])
            channels = max(channels, header.channels)
        }
        guard !kept.isEmpty else { throw .noImages(path: root, failures: failures) }
        files = kept
        let size = sizes.count == 1 ? sizes.first : nil
        baseInfo = DatasetInfo(id: id, kind: kind, name: name ?? (root as NSString).lastPathComponent, count: kept.count,
                               classes: classFolders, imageWidth: size?[0], imageHeight: size?[1], channels: channels,
                               licence: licence, decodeFailures: failures)
    }

    public var count: Int { files.count }

    public var info: DatasetInfo {
        var info = baseInfo
        info.decodeFailures += laterFailures.load(ordering: .relaxed)
        return info
    }

    /// The file behind image `index`.
    public func path(at index: Int) -> String { files[index].path }

    public func label(at index: Int) -> Int? { files[index].label }

    public func image(at index: Int) throws -> RGBImage {
        let path = files[index].path
        do {
            guard let bytes = FileManager.default.contents(atPath: path) else {
                throw DatasetError.unreadable(path: path, reason: "the file is gone or unreadable")
            }
            return try ImageCodec.decode([UInt8](bytes), maxPixels: maxPixels)
        } catch {
            laterFailures.add(1, ordering: .relaxed)
            throw error
        }
    }
}
