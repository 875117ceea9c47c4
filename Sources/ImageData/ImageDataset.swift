/// A finite, indexable collection of images, optionally labelled. Implementations are
/// immutable after creation (apart from thread-safe counters), so loader threads share them.
public protocol ImageDataset: Sendable {
    var info: DatasetInfo { get }
    var count: Int { get }
    /// The image at `index` (0 ..< count). Throws when the file behind it cannot be read or
    /// decoded; the loader counts that and takes a neighbour instead.
    func image(at index: Int) throws -> RGBImage
    /// The class index of the image, or nil for unlabelled datasets.
    func label(at index: Int) -> Int?
}

/// What the server lists about a dataset (JSON keys snake_case).
public struct DatasetInfo: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case synthetic, fashionMNIST = "fashion-mnist", imageFolder = "image-folder", samples
    }

    /// Stable identifier used by job submissions (`synthetic`, `fashion-mnist`, …).
    public var id: String
    public var kind: Kind
    public var name: String
    public var count: Int
    /// Class names, index = label; empty for unlabelled datasets.
    public var classes: [String]
    /// Width and height when every image has the same size, nil for mixed sizes.
    public var imageWidth: Int?
    public var imageHeight: Int?
    /// 1 for gray datasets, 3 for colour (batches always have 3 channels).
    public var channels: Int
    public var licence: String
    /// Files skipped because they could not be decoded (when the dataset was opened, plus any
    /// found later by loaders).
    public var decodeFailures: Int

    public var labelled: Bool { !classes.isEmpty }

    public init(id: String, kind: Kind, name: String, count: Int, classes: [String], imageWidth: Int?,
                imageHeight: Int?, channels: Int, licence: String, decodeFailures: Int = 0) {
        self.id = id
        self.kind = kind
        self.name = name
        self.count = count
        self.classes = classes
        self.imageWidth = imageWidth
        self.imageHeight = imageHeight
        self.channels = channels
        self.licence = licence
        self.decodeFailures = decodeFailures
    }

    enum CodingKeys: String, CodingKey {
        case id, kind, name, count, classes, channels, licence
        case imageWidth = "image_width", imageHeight = "image_height", decodeFailures = "decode_failures"
    }
}

/// Why a dataset could not be opened.
public enum DatasetError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No dataset has this id; `available` lists those that do.
    case unknownDataset(String, available: [String])
    /// A built-in dataset whose files are not on this machine (e.g. the Debian package).
    case notInstalled(String, hint: String)
    /// A file or folder could not be read.
    case unreadable(path: String, reason: String)
    /// An IDX file whose header or size is wrong.
    case invalidIDX(path: String, reason: String)
    /// A folder with no decodable PNG or JPEG in it.
    case noImages(path: String, failures: Int)
    /// An id that is not a lowercase name (letters, digits, `-`, `_`, at most 64).
    case invalidID(String)
    /// A registered folder would take a built-in's id.
    case reservedID(String)

    public var description: String {
        switch self {
        case .unknownDataset(let id, let available):
            "unknown dataset '\(id)'; available: \(available.joined(separator: ", "))"
        case .notInstalled(let id, let hint): "dataset '\(id)' is not installed: \(hint)"
        case .unreadable(let path, let reason): "cannot read \(path): \(reason)"
        case .invalidIDX(let path, let reason): "\(path) is not a valid IDX file: \(reason)"
        case .noImages(let path, let failures):
            "no decodable PNG or JPEG images in \(path)" + (failures > 0 ? " (\(failures) failed to decode)" : "")
        case .invalidID(let id): "invalid dataset id '\(id)': use lowercase letters, digits, '-' and '_' (1–64)"
        case .reservedID(let id): "dataset id '\(id)' is reserved for a built-in dataset"
        }
    }
}
