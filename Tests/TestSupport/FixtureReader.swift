import Foundation

// Reader for the "MIMF" golden fixtures written by the scripts under Tools/reference.
// Shared by every test target through the TestSupport library.
//
// Layout, all integers little-endian UInt32, all values little-endian float32:
//   "MIMF", version (1), tensor count, then per tensor:
//   name length, UTF-8 name, rank, rank × dim, product(dims) × float32.

/// One named tensor from a fixture; rank 0 holds a single value.
public struct FixtureTensor: Sendable {
    public let name: String
    public let shape: [Int]
    public let values: [Float]

    /// The value of a rank-0 (or one-element) tensor.
    public var scalar: Float {
        precondition(values.count == 1, "'\(name)' has shape \(shape), not a scalar")
        return values[0]
    }
}

public enum FixtureError: Error, CustomStringConvertible {
    case badMagic
    case unsupportedVersion(UInt32)
    case truncated(offset: Int, needed: Int, available: Int)
    case invalidName(offset: Int)
    case duplicateName(String)
    case trailingBytes(Int)
    case missing(String)

    public var description: String {
        switch self {
        case .badMagic: "not a MIMF fixture (bad magic bytes)"
        case .unsupportedVersion(let v): "unsupported MIMF version \(v) (this reader knows 1)"
        case let .truncated(offset, needed, available):
            "fixture truncated: need \(needed) bytes at offset \(offset), \(available) left"
        case .invalidName(let offset): "tensor name at offset \(offset) is not UTF-8"
        case .duplicateName(let n): "tensor '\(n)' appears twice"
        case .trailingBytes(let n): "\(n) unread bytes after the last tensor"
        case .missing(let n): "fixture has no tensor '\(n)'"
        }
    }
}

/// The tensors of a MIMF file, in file order and by name.
public struct Fixture: Sendable {
    static let supportedVersion: UInt32 = 1

    public let tensors: [FixtureTensor]
    private let index: [String: Int]

    public init(contentsOf url: URL) throws {
        try self.init(bytes: [UInt8](Data(contentsOf: url)))
    }

    public init(bytes: [UInt8]) throws {
        var reader = ByteReader(bytes: bytes)
        guard try reader.take(4).elementsEqual("MIMF".utf8) else { throw FixtureError.badMagic }
        let version = try reader.uint32()
        guard version == Self.supportedVersion else { throw FixtureError.unsupportedVersion(version) }
        let count = Int(try reader.uint32())
        var tensors: [FixtureTensor] = []
        var index: [String: Int] = [:]
        for _ in 0..<count {
            let nameOffset = reader.offset
            let nameLength = Int(try reader.uint32())
            guard let name = String(validating: try reader.take(nameLength), as: UTF8.self) else {
                throw FixtureError.invalidName(offset: nameOffset)
            }
            let rank = Int(try reader.uint32())
            var shape: [Int] = []
            for _ in 0..<rank { shape.append(Int(try reader.uint32())) }
            let values = try reader.float32s(shape.reduce(1, *))
            guard index.updateValue(tensors.count, forKey: name) == nil else {
                throw FixtureError.duplicateName(name)
            }
            tensors.append(FixtureTensor(name: name, shape: shape, values: values))
        }
        guard reader.remaining == 0 else { throw FixtureError.trailingBytes(reader.remaining) }
        self.tensors = tensors
        self.index = index
    }

    public subscript(name: String) -> FixtureTensor? { index[name].map { tensors[$0] } }

    /// The tensor called `name`, or an error naming it.
    public func tensor(_ name: String) throws -> FixtureTensor {
        guard let t = self[name] else { throw FixtureError.missing(name) }
        return t
    }
}

private struct ByteReader {
    let bytes: [UInt8]
    var offset = 0

    var remaining: Int { bytes.count - offset }

    mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n <= remaining else {
            throw FixtureError.truncated(offset: offset, needed: n, available: remaining)
        }
        defer { offset += n }
        return bytes[offset..<offset + n]
    }

    mutating func uint32() throws -> UInt32 {
        let b = try take(4)
        return b.reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func float32s(_ n: Int) throws -> [Float] {
        let raw = try take(n * 4)
        return raw.withUnsafeBytes { buffer in
            (0..<n).map { i in
                Float(bitPattern: UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            }
        }
    }
}

import TensorCore

extension FixtureTensor {
    /// The values as an engine tensor of the same shape.
    public var tensor: Tensor { Tensor(values, shape: shape) }
}

extension Fixture {
    /// The tensors whose names start with `prefix`, by the rest of their name (a model's
    /// `<kind>.param.<name>` weights).
    public func tensors(prefixed prefix: String) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for t in tensors where t.name.hasPrefix(prefix) { out[String(t.name.dropFirst(prefix.count))] = t.tensor }
        return out
    }
}
