#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TensorCore

/// Reads and writes the safetensors format: an 8-byte little-endian header length, a JSON header
/// mapping each tensor name to `{"dtype", "shape", "data_offsets"}` (plus an optional
/// `"__metadata__"` string map), then the data buffer. Only F32 is supported.
public enum SafeTensors {
    /// Headers beyond this are corrupt or hostile; real ones are kilobytes.
    static let maxHeaderLength: UInt64 = 100_000_000

    /// Byte-exact with the reference writer: names in byte order, data in name order, header
    /// padded with spaces so the data buffer starts 8-byte aligned.
    public static func encode(_ tensors: [String: Tensor], metadata: [String: String] = [:]) -> [UInt8] {
        let byteOrder: (String, String) -> Bool = { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        let names = tensors.keys.sorted(by: byteOrder)
        var entries: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted(by: byteOrder).map { "\(quoted($0)):\(quoted(metadata[$0]!))" }
            entries.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
        }
        var offset = 0
        for name in names {
            let t = tensors[name]!
            let shape = t.shape.map(String.init).joined(separator: ",")
            entries.append("\(quoted(name)):{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + 4 * t.count)]}")
            offset += 4 * t.count
        }
        var header = Array("{\(entries.joined(separator: ","))}".utf8)
        header += repeatElement(UInt8(ascii: " "), count: (8 - header.count % 8) % 8)

        var out: [UInt8] = []
        out.reserveCapacity(8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        out += header
        let dataStart = out.count
        out += repeatElement(0, count: offset)
        out.withUnsafeMutableBytes { raw in
            var at = dataStart
            for name in names {
                for x in tensors[name]!.data {
                    raw.storeBytes(of: x.bitPattern.littleEndian, toByteOffset: at, as: UInt32.self)
                    at += 4
                }
            }
        }
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws(SafeTensorsError) -> (tensors: [String: Tensor], metadata: [String: String]) {
        let (header, metadata, dataStart) = try parseHeader(bytes)
        return try (tensors(header, bytes, dataStart), metadata)
    }

    /// The metadata of a file, reading only its header (a weights file's configuration without
    /// its tensors).
    public static func readMetadata(path: String) throws(SafeTensorsError) -> [String: String] {
        let prefix = try readPrefix(path, count: 8)
        guard prefix.count == 8 else { throw .fileTooShort(byteCount: prefix.count) }
        let length = prefix.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard length <= maxHeaderLength else { throw .headerTooLarge(length: length) }
        let bytes = try readPrefix(path, count: 8 + Int(length))
        return try parseHeader(bytes).metadata
    }

    private static func parseHeader(_ bytes: [UInt8]) throws(SafeTensorsError) -> (header: [String: JSON], metadata: [String: String], dataStart: Int) {
        guard bytes.count >= 8 else { throw .fileTooShort(byteCount: bytes.count) }
        let length = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard length <= maxHeaderLength else { throw .headerTooLarge(length: length) }
        guard 8 + Int(length) <= bytes.count else {
            throw .headerPastEnd(headerLength: Int(length), fileSize: bytes.count)
        }
        let dataStart = 8 + Int(length)
        let headerBytes = Array(bytes[8..<dataStart])
        guard String(validating: headerBytes, as: UTF8.self) != nil else { throw .headerNotUTF8 }
        guard case .object(let header) = try HeaderParser.parse(headerBytes) else { throw .headerNotObject }

        var metadata: [String: String] = [:]
        switch header["__metadata__"] {
        case nil, .null?: break
        case .object(let pairs)?:
            for (key, value) in pairs {
                guard case .string(let s) = value else { throw .metadataValueNotString(key: key) }
                metadata[key] = s
            }
        default: throw .metadataNotObject
        }
        return (header, metadata, dataStart)
    }

    private static func tensors(_ header: [String: JSON], _ bytes: [UInt8], _ dataStart: Int) throws(SafeTensorsError) -> [String: Tensor] {
        let bufferSize = bytes.count - dataStart
        var layout: [(name: String, shape: [Int], begin: Int, end: Int)] = []
        // Sorted so that a file with several faults always reports the same one.
        for name in header.keys.sorted() where name != "__metadata__" {
            guard case .object(let fields) = header[name]! else { throw .entryNotObject(tensor: name) }
            func field(_ key: String) throws(SafeTensorsError) -> JSON {
                guard let value = fields[key] else { throw .missingField(tensor: name, field: key) }
                return value
            }
            guard case .string(let dtype) = try field("dtype") else {
                throw .wrongFieldType(tensor: name, field: "dtype", expected: "a string")
            }
            guard dtype == "F32" else { throw .unsupportedDtype(tensor: name, dtype: dtype) }
            guard case .array(let dims) = try field("shape") else {
                throw .wrongFieldType(tensor: name, field: "shape", expected: "an array of integers")
            }
            var shape: [Int] = []
            for d in dims {
                guard case .number(let text) = d, let n = Int(text), n >= 0 else {
                    throw .invalidDimension(tensor: name, value: d.summary)
                }
                shape.append(n)
            }
            let offsetsValue = try field("data_offsets")
            guard case .array(let offsets) = offsetsValue, offsets.count == 2,
                  case .number(let b) = offsets[0], let begin = Int(b),
                  case .number(let e) = offsets[1], let end = Int(e),
                  0 <= begin, begin <= end
            else { throw .invalidDataOffsets(tensor: name, value: offsetsValue.summary) }
            guard end <= bufferSize else { throw .dataPastEnd(tensor: name, end: end, bufferSize: bufferSize) }
            // Left to right, as Tensor computes its count, so a shape accepted here cannot trap there.
            var byteCount = 4
            for n in shape {
                let (p, overflow) = byteCount.multipliedReportingOverflow(by: n)
                guard !overflow else { throw .shapeTooLarge(tensor: name, shape: shape) }
                byteCount = p
            }
            guard byteCount == end - begin else {
                throw .sizeMismatch(tensor: name, shape: shape, expectedBytes: byteCount, actualBytes: end - begin)
            }
            layout.append((name, shape, begin, end))
        }

        layout.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var cursor = 0
        var previous: (name: String, begin: Int, end: Int)?
        for entry in layout {
            if entry.begin < cursor, let p = previous {
                throw .overlap(tensor: entry.name, begin: entry.begin, other: p.name, otherRange: p.begin..<p.end)
            }
            guard entry.begin == cursor else { throw .gap(tensor: entry.name, begin: entry.begin, expected: cursor) }
            cursor = entry.end
            previous = (entry.name, entry.begin, entry.end)
        }
        guard cursor == bufferSize else { throw .trailingBytes(count: bufferSize - cursor) }

        var tensors: [String: Tensor] = [:]
        bytes.withUnsafeBytes { raw in
            for entry in layout {
                let t = Tensor(uninitialized: entry.shape)
                for i in 0..<t.count {
                    let bits = raw.loadUnaligned(fromByteOffset: dataStart + entry.begin + 4 * i, as: UInt32.self)
                    t.pointer[i] = Float(bitPattern: UInt32(littleEndian: bits))
                }
                tensors[entry.name] = t
            }
        }
        return tensors
    }

    /// Through `AtomicFile`: readers see the old file or the new one, even across a crash.
    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:], to path: String) throws(SafeTensorsError) {
        do { try AtomicFile.write(encode(tensors, metadata: metadata), to: path) } catch {
            throw .io(operation: error.operation, path: error.path, code: error.code)
        }
    }

    public static func read(path: String) throws(SafeTensorsError) -> (tensors: [String: Tensor], metadata: [String: String]) {
        try decode(readAll(path))
    }
}

/// One case per way a file can be rejected; messages name the tensor involved.
public enum SafeTensorsError: Error, Equatable, CustomStringConvertible {
    /// Fewer than the 8 bytes of the header-length prefix.
    case fileTooShort(byteCount: Int)
    /// The length prefix exceeds `SafeTensors.maxHeaderLength` (100 MB).
    case headerTooLarge(length: UInt64)
    /// The length prefix points past the end of the file.
    case headerPastEnd(headerLength: Int, fileSize: Int)
    /// The header bytes are not valid UTF-8.
    case headerNotUTF8
    /// Malformed JSON; `offset` counts bytes from the start of the header.
    case invalidJSON(offset: Int, reason: String)
    /// The header is valid JSON but not an object.
    case headerNotObject
    /// An object in the header repeats a key (at the top level: a tensor name).
    case duplicateKey(String)
    /// `__metadata__` is present but neither an object nor null.
    case metadataNotObject
    /// A `__metadata__` value that is not a string.
    case metadataValueNotString(key: String)
    /// A tensor entry that is not a JSON object.
    case entryNotObject(tensor: String)
    /// A tensor entry without `dtype`, `shape` or `data_offsets`.
    case missingField(tensor: String, field: String)
    /// `dtype` that is not a string, or `shape` that is not an array.
    case wrongFieldType(tensor: String, field: String, expected: String)
    /// Any dtype but F32.
    case unsupportedDtype(tensor: String, dtype: String)
    /// A shape entry that is not a non-negative integer.
    case invalidDimension(tensor: String, value: String)
    /// The byte size of the shape does not fit in an Int.
    case shapeTooLarge(tensor: String, shape: [Int])
    /// `data_offsets` is not `[begin, end]` with integers 0 ≤ begin ≤ end.
    case invalidDataOffsets(tensor: String, value: String)
    /// A tensor's `end` offset lies beyond the data buffer.
    case dataPastEnd(tensor: String, end: Int, bufferSize: Int)
    /// The shape needs `expectedBytes` (4 per element) but the offsets span `actualBytes`.
    case sizeMismatch(tensor: String, shape: [Int], expectedBytes: Int, actualBytes: Int)
    /// A tensor starts inside the byte range of another.
    case overlap(tensor: String, begin: Int, other: String, otherRange: Range<Int>)
    /// Unused bytes before a tensor: tensors must tile the data buffer from 0.
    case gap(tensor: String, begin: Int, expected: Int)
    /// Unused bytes after the last tensor.
    case trailingBytes(count: Int)
    /// A system call failed while reading or writing `path`.
    case io(operation: String, path: String, code: Int32)

    public var description: String {
        switch self {
        case .fileTooShort(let n): "file is \(n) bytes, shorter than the 8-byte header length"
        case .headerTooLarge(let n): "header length \(n) exceeds the \(SafeTensors.maxHeaderLength)-byte limit"
        case .headerPastEnd(let n, let size): "header length \(n) runs past the end of the \(size)-byte file"
        case .headerNotUTF8: "header is not valid UTF-8"
        case .invalidJSON(let offset, let reason): "header is not valid JSON at byte \(offset): \(reason)"
        case .headerNotObject: "header JSON is not an object"
        case .duplicateKey(let key): "header repeats the key \"\(key)\""
        case .metadataNotObject: "__metadata__ is not an object of strings"
        case .metadataValueNotString(let key): "__metadata__ value for \"\(key)\" is not a string"
        case .entryNotObject(let t): "tensor '\(t)': entry is not an object"
        case .missingField(let t, let f): "tensor '\(t)': missing \"\(f)\""
        case .wrongFieldType(let t, let f, let expected): "tensor '\(t)': \"\(f)\" must be \(expected)"
        case .unsupportedDtype(let t, let d): "tensor '\(t)': unsupported dtype \(d) (only F32 is supported)"
        case .invalidDimension(let t, let v): "tensor '\(t)': shape dimension \(v) is not a non-negative integer"
        case .shapeTooLarge(let t, let s): "tensor '\(t)': shape \(s) is too large"
        case .invalidDataOffsets(let t, let v): "tensor '\(t)': data_offsets \(v) is not [begin, end] with 0 ≤ begin ≤ end"
        case .dataPastEnd(let t, let end, let size): "tensor '\(t)': data ends at byte \(end), past the \(size)-byte data buffer"
        case .sizeMismatch(let t, let s, let expected, let actual):
            "tensor '\(t)': shape \(s) needs \(expected) bytes but data_offsets span \(actual)"
        case .overlap(let t, let begin, let other, let range):
            "tensor '\(t)' starts at byte \(begin), inside '\(other)' (bytes \(range.lowerBound)..<\(range.upperBound))"
        case .gap(let t, let begin, let expected): "tensor '\(t)' starts at byte \(begin); unused bytes from \(expected)"
        case .trailingBytes(let n): "\(n) unused bytes after the last tensor"
        case .io(let op, let path, let code): "\(op) \(path): \(String(cString: strerror(code)))"
        }
    }
}
