/// Why a picture could not be read or written. Every failure of the codecs is one of these;
/// libpng and libjpeg errors never escape as crashes or jumps.
public enum ImageError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The input has no bytes at all.
    case empty
    /// The first bytes are neither a PNG nor a JPEG signature (the first few are kept).
    case unknownFormat(magic: [UInt8])
    /// The data ends before the image does.
    case truncated(ImageFormat)
    /// The header declares a zero or impossible size.
    case invalidDimensions(ImageFormat, width: Int, height: Int)
    /// The header declares more pixels than the caller allows; nothing was allocated for them.
    case tooLarge(ImageFormat, width: Int, height: Int, maxPixels: Int)
    /// The decoder rejected the data (bad CRC, bad Huffman or deflate data, bad markers …),
    /// with the library's own message.
    case corrupt(ImageFormat, String)
    /// A valid file in a variant we do not decode (e.g. a JPEG colour space with no RGB form).
    case unsupported(ImageFormat, String)
    /// The encoder failed (the library's message).
    case encodeFailed(String)

    public var description: String {
        switch self {
        case .empty: "the image is empty (0 bytes)"
        case .unknownFormat(let magic):
            "not a PNG or JPEG image (starts with \(magic.map { String($0, radix: 16) }.joined(separator: " ")))"
        case .truncated(let f): "the \(f.name) data ends early (truncated file)"
        case .invalidDimensions(let f, let w, let h): "the \(f.name) header declares an invalid size \(w)×\(h)"
        case .tooLarge(let f, let w, let h, let cap):
            "the \(f.name) image is \(w)×\(h) = \(w * h) pixels, over the limit of \(cap) pixels"
        case .corrupt(let f, let message): "corrupt \(f.name) data: \(message)"
        case .unsupported(let f, let message): "unsupported \(f.name) variant: \(message)"
        case .encodeFailed(let message): "PNG encoding failed: \(message)"
        }
    }
}
