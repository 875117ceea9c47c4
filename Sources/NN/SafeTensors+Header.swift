#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TensorCore

// The safetensors header parser and the file reading beneath `SafeTensors.read`.

/// Just enough JSON for the header. JSONSerialization would silently keep one of two duplicate
/// keys and cannot tell 2 from 2.0 or true from 1, all of which the format must reject.
enum JSON {
    case object([String: JSON])
    case array([JSON])
    case string(String)
    /// The literal text, so integers are read exactly and 2.0 is not mistaken for 2.
    case number(String)
    case bool(Bool)
    case null

    /// Short rendering for error messages.
    var summary: String {
        switch self {
        case .object: "{…}"
        case .array(let items): "[\(items.map(\.summary).joined(separator: ", "))]"
        case .string(let s): "\"\(s)\""
        case .number(let text): text
        case .bool(let b): "\(b)"
        case .null: "null"
        }
    }
}

struct HeaderParser {
    /// Bounds recursion so a header of 100 MB of '[' cannot overflow the stack.
    static let maxDepth = 64
    static let escapes: [UInt8: UInt8] = [
        0x22: 0x22, 0x5C: 0x5C, 0x2F: 0x2F, 0x62: 0x08, 0x66: 0x0C, 0x6E: 0x0A, 0x72: 0x0D, 0x74: 0x09,
    ]
    private let bytes: [UInt8]
    private var index = 0
    private var depth = 0

    static func parse(_ bytes: [UInt8]) throws(SafeTensorsError) -> JSON {
        var parser = HeaderParser(bytes: bytes)
        let value = try parser.value()
        parser.skipWhitespace()
        guard parser.index == bytes.count else { throw parser.failure("unexpected text after the value") }
        return value
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

    private func failure(_ reason: String) -> SafeTensorsError { .invalidJSON(offset: index, reason: reason) }

    private mutating func skipWhitespace() {
        while let b = peek, b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 { index += 1 }
    }

    private mutating func consume(_ literal: String) throws(SafeTensorsError) {
        for b in literal.utf8 {
            guard peek == b else { throw failure("expected \(literal)") }
            index += 1
        }
    }

    private mutating func value() throws(SafeTensorsError) -> JSON {
        skipWhitespace()
        switch peek {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            depth += 1
            guard depth <= Self.maxDepth else { throw failure("nested deeper than \(Self.maxDepth)") }
            defer { depth -= 1 }
            return peek == UInt8(ascii: "{") ? try object() : try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try consume("true"); return .bool(true)
        case UInt8(ascii: "f"): try consume("false"); return .bool(false)
        case UInt8(ascii: "n"): try consume("null"); return .null
        case nil: throw failure("unexpected end")
        default: return .number(try number())
        }
    }

    private mutating func object() throws(SafeTensorsError) -> JSON {
        index += 1
        var members: [String: JSON] = [:]
        skipWhitespace()
        if peek == UInt8(ascii: "}") { index += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard peek == UInt8(ascii: "\"") else { throw failure("expected a string key") }
            let key = try string()
            skipWhitespace()
            try consume(":")
            guard members.updateValue(try value(), forKey: key) == nil else { throw .duplicateKey(key) }
            skipWhitespace()
            if peek == UInt8(ascii: ",") { index += 1; continue }
            try consume("}")
            return .object(members)
        }
    }

    private mutating func array() throws(SafeTensorsError) -> JSON {
        index += 1
        var items: [JSON] = []
        skipWhitespace()
        if peek == UInt8(ascii: "]") { index += 1; return .array(items) }
        while true {
            items.append(try value())
            skipWhitespace()
            if peek == UInt8(ascii: ",") { index += 1; continue }
            try consume("]")
            return .array(items)
        }
    }

    private mutating func string() throws(SafeTensorsError) -> String {
        index += 1
        var out: [UInt8] = []
        while true {
            guard let b = peek else { throw failure("unterminated string") }
            index += 1
            switch b {
            case UInt8(ascii: "\""): return String(decoding: out, as: UTF8.self)
            case 0..<0x20: throw failure("control character in string")
            case UInt8(ascii: "\\"):
                guard let e = peek else { throw failure("unterminated string") }
                index += 1
                if let c = Self.escapes[e] { out.append(c); continue }
                guard e == UInt8(ascii: "u") else { throw failure("invalid escape") }
                var code = try hex4()
                if (0xD800..<0xDC00).contains(code) {
                    try consume("\\u")
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw failure("unpaired surrogate") }
                    code = 0x10000 + (code - 0xD800) << 10 + (low - 0xDC00)
                }
                guard let scalar = Unicode.Scalar(code) else { throw failure("unpaired surrogate") }
                UTF8.encode(scalar) { out.append($0) }
            default: out.append(b)
            }
        }
    }

    private mutating func hex4() throws(SafeTensorsError) -> UInt32 {
        var code: UInt32 = 0
        for _ in 0..<4 {
            // Radix parsing alone would accept a sign, so each byte must be a hex digit.
            guard let b = peek, let digit = UInt32(String(UnicodeScalar(b)), radix: 16) else {
                throw failure("invalid \\u escape")
            }
            code = code << 4 | digit
            index += 1
        }
        return code
    }

    private mutating func number() throws(SafeTensorsError) -> String {
        let start = index
        if peek == UInt8(ascii: "-") { index += 1 }
        let intStart = index
        guard digits() > 0 else { throw failure("invalid value") }
        guard bytes[intStart] != UInt8(ascii: "0") || index == intStart + 1 else { throw failure("leading zero") }
        if peek == UInt8(ascii: ".") {
            index += 1
            guard digits() > 0 else { throw failure("expected digits after '.'") }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            index += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { index += 1 }
            guard digits() > 0 else { throw failure("expected exponent digits") }
        }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    private mutating func digits() -> Int {
        let start = index
        while let b = peek, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) { index += 1 }
        return index - start
    }
}

func quoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{8}": out += "\\b"
        case "\u{C}": out += "\\f"
        case _ where scalar.value < 0x20:
            out += "\\u00" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

/// The first `count` bytes of a file (fewer when it is shorter).
func readPrefix(_ path: String, count: Int) throws(SafeTensorsError) -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw .io(operation: "open", path: path, code: errno) }
    defer { close(fd) }
    var out = [UInt8](repeating: 0, count: count), filled = 0
    while filled < count {
        let n = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, count - filled) }
        if n < 0 && errno == EINTR { continue }
        guard n >= 0 else { throw .io(operation: "read", path: path, code: errno) }
        if n == 0 { break }
        filled += n
    }
    return Array(out[0..<filled])
}

func readAll(_ path: String) throws(SafeTensorsError) -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw .io(operation: "open", path: path, code: errno) }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n >= 0 else { throw .io(operation: "read", path: path, code: errno) }
        if n == 0 { return out }
        out += chunk[0..<n]
    }
}
