import Foundation
import Testing
import TensorCore
@testable import NN
import TestSupport

// MARK: - Helpers

/// A file with `header` given verbatim (no padding) followed by `data`.
private func file(_ header: String, data: [UInt8] = []) -> [UInt8] {
    let h = Array(header.utf8)
    return littleEndian(UInt64(h.count)) + h + data
}

private func littleEndian(_ n: UInt64) -> [UInt8] { withUnsafeBytes(of: n.littleEndian) { Array($0) } }

private func floatBytes(_ xs: [Float]) -> [UInt8] {
    xs.flatMap { x in withUnsafeBytes(of: x.bitPattern.littleEndian) { Array($0) } }
}

/// A one-tensor header with the given raw JSON for each field.
private func entry(_ name: String = "a", dtype: String = "\"F32\"", shape: String = "[1]", offsets: String = "[0,4]") -> String {
    "\"\(name)\":{\"dtype\":\(dtype),\"shape\":\(shape),\"data_offsets\":\(offsets)}"
}

private func decodeError(_ bytes: [UInt8]) -> SafeTensorsError? {
    do {
        _ = try SafeTensors.decode(bytes)
        return nil
    } catch {
        return error
    }
}

private func bits(_ t: Tensor) -> [UInt32] { t.scalars.map(\.bitPattern) }

// MARK: - Round trip and layout

@Test func safeTensorsRoundTripKeepsShapesValuesAndMetadata() throws {
    let tensors: [String: Tensor] = [
        "blocks.0.attn.qkv.weight": Tensor((0..<15).map { Float($0) * 0.25 - 1 }, shape: [3, 5]),
        "bias": Tensor([1, -2, 3.5, 4, 5, 6, 7], shape: [7]),
        "scale": Tensor(scalar: 0.125),
        "empty": Tensor(zeros: [0, 4]),
        "odd": Tensor([.pi, -0.0, .infinity, -.infinity, .nan, .leastNonzeroMagnitude], shape: [1, 3, 1, 2]),
        "quote \"and\" back\\slash\n é": Tensor([42], shape: [1, 1]),
    ]
    let metadata = ["format": "pt", "note": "quotes \" backslash \\ tab \t é ✓"]
    let bytes = SafeTensors.encode(tensors, metadata: metadata)
    let decoded = try SafeTensors.decode(bytes)

    #expect(decoded.metadata == metadata)
    #expect(Set(decoded.tensors.keys) == Set(tensors.keys))
    for (name, t) in tensors {
        let d = try #require(decoded.tensors[name], "missing \(name)")
        #expect(d.shape == t.shape, "\(name)")
        #expect(bits(d) == bits(t), "\(name)")  // bit patterns: NaN and -0 must survive too
    }
    #expect(decoded.tensors["scale"]?.shape == [])
    #expect(decoded.tensors["empty"]?.count == 0)
}

@Test func safeTensorsEncodeLayout() throws {
    let bytes = SafeTensors.encode(["b": Tensor([1], shape: [1]), "a": Tensor([2, 3], shape: [2])])
    let n = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
    #expect(n % 8 == 0)
    #expect(bytes[8] == UInt8(ascii: "{"))
    #expect(bytes.count == 8 + Int(n) + 12)
    let header = String(decoding: bytes[8..<8 + Int(n)], as: UTF8.self)
    let expected = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
    #expect(header.hasPrefix(expected))
    #expect(header.dropFirst(expected.utf8.count).allSatisfy { $0 == " " })
    #expect(Array(bytes[(8 + Int(n))...]) == floatBytes([2, 3, 1]))  // data in name order

    let withMetadata = SafeTensors.encode([:], metadata: ["k": "v"])
    let m = String(decoding: withMetadata[8...], as: UTF8.self)
    #expect(m.trimmingCharacters(in: .whitespaces) == #"{"__metadata__":{"k":"v"}}"#)
    #expect((withMetadata.count - 8) % 8 == 0)
}

/// The bytes the reference implementation (`safetensors.torch.save_file({"a": tensor([1., 2.])})`)
/// writes: a 56-byte header (54 bytes of JSON and 2 spaces), then 8 bytes of data.
private let referenceFile: [UInt8] = {
    let json = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
    let header = Array(json.utf8) + Array(repeating: UInt8(ascii: " "), count: 2)
    return [56, 0, 0, 0, 0, 0, 0, 0] + header + [0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x40]
}()

@Test func safeTensorsReadsAndWritesTheReferenceBytes() throws {
    let decoded = try SafeTensors.decode(referenceFile)
    let a = try #require(decoded.tensors["a"])
    #expect(a.shape == [2])
    #expect(a.scalars == [1, 2])
    #expect(decoded.metadata.isEmpty)
    #expect(SafeTensors.encode(["a": Tensor([1, 2], shape: [2])]) == referenceFile)
}

@Test func safeTensorsAcceptsEdgeCases() throws {
    // Zero-element tensors sit anywhere with begin == end, even at the end of the buffer.
    let header = "{\(entry("z0", shape: "[0]", offsets: "[0,0]")),\(entry("a")),\(entry("z1", shape: "[3,0]", offsets: "[4,4]"))}"
    let decoded = try SafeTensors.decode(file(header, data: floatBytes([9])))
    #expect(decoded.tensors["z0"]?.shape == [0])
    #expect(decoded.tensors["z1"]?.shape == [3, 0])
    #expect(decoded.tensors["a"]?.scalars == [9])
    // Empty file content, null metadata, JSON whitespace and escapes in names.
    #expect(try SafeTensors.decode(file("{}")).tensors.isEmpty)
    let other = try SafeTensors.decode(file(" {\"__metadata__\" : null,\t\n\(entry("\\u00e9\\ud83d\\ude00"))} ", data: floatBytes([1])))
    #expect(other.tensors["é😀"]?.scalars == [1])
}

// MARK: - Rejections

struct Rejection: Sendable, CustomTestStringConvertible {
    let label: String
    let bytes: [UInt8]
    let error: SafeTensorsError
    var testDescription: String { label }

    init(_ label: String, _ bytes: [UInt8], _ error: SafeTensorsError) {
        (self.label, self.bytes, self.error) = (label, bytes, error)
    }

    init(_ label: String, header: String, data: [UInt8] = [], _ error: SafeTensorsError) {
        self.init(label, file(header, data: data), error)
    }
}

private let four = floatBytes([1])
private let deeplyNested = String(repeating: "[", count: 100_000)

private let rejections: [Rejection] = [
    Rejection("empty file", [], .fileTooShort(byteCount: 0)),
    Rejection("7 bytes", [1, 0, 0, 0, 0, 0, 0], .fileTooShort(byteCount: 7)),
    Rejection("header past end", littleEndian(100) + Array(repeating: 0x20, count: 10), .headerPastEnd(headerLength: 100, fileSize: 18)),
    Rejection("header over 100 MB", littleEndian(100_000_001) + Array("{}".utf8), .headerTooLarge(length: 100_000_001)),
    Rejection("header length UInt64.max", littleEndian(.max), .headerTooLarge(length: .max)),
    Rejection("invalid UTF-8", littleEndian(3) + [0x7B, 0xFF, 0x7D], .headerNotUTF8),
    Rejection("truncated JSON", header: #"{"a":"#, .invalidJSON(offset: 5, reason: "unexpected end")),
    Rejection("trailing comma", header: #"{"a":1,}"#, .invalidJSON(offset: 7, reason: "expected a string key")),
    Rejection("text after JSON", header: "{} x", .invalidJSON(offset: 3, reason: "unexpected text after the value")),
    Rejection("leading zero", header: #"{"a":01}"#, .invalidJSON(offset: 7, reason: "leading zero")),
    Rejection("bad escape", header: #"{"\q":1}"#, .invalidJSON(offset: 4, reason: "invalid escape")),
    Rejection("lone surrogate", header: #"{"\udc00":1}"#, .invalidJSON(offset: 8, reason: "unpaired surrogate")),
    Rejection("signed \\u escape", header: #"{"\u+123":1}"#, .invalidJSON(offset: 4, reason: #"invalid \u escape"#)),
    Rejection("raw newline in string", header: "{\"a\n\":1}", .invalidJSON(offset: 4, reason: "control character in string")),
    Rejection("nesting 100k deep", header: deeplyNested, .invalidJSON(offset: 64, reason: "nested deeper than 64")),
    Rejection("header is an array", header: "[1,2]", .headerNotObject),
    Rejection("header is a string", header: #""x""#, .headerNotObject),
    Rejection("duplicate tensor", header: "{\(entry()),\(entry())}", data: four, .duplicateKey("a")),
    Rejection("duplicate via escape", header: "{\(entry()),\(entry("\\u0061"))}", data: four, .duplicateKey("a")),
    Rejection("metadata not object", header: #"{"__metadata__":"x"}"#, .metadataNotObject),
    Rejection("metadata value not string", header: #"{"__metadata__":{"ok":"1","n":2}}"#, .metadataValueNotString(key: "n")),
    Rejection("entry not object", header: #"{"a":[1]}"#, .entryNotObject(tensor: "a")),
    Rejection("missing dtype", header: #"{"a":{"shape":[1],"data_offsets":[0,4]}}"#, data: four, .missingField(tensor: "a", field: "dtype")),
    Rejection("missing shape", header: #"{"a":{"dtype":"F32","data_offsets":[0,4]}}"#, data: four, .missingField(tensor: "a", field: "shape")),
    Rejection("missing offsets", header: #"{"a":{"dtype":"F32","shape":[1]}}"#, data: four, .missingField(tensor: "a", field: "data_offsets")),
    Rejection("dtype not string", header: "{\(entry(dtype: "32"))}", data: four, .wrongFieldType(tensor: "a", field: "dtype", expected: "a string")),
    Rejection("shape not array", header: "{\(entry(shape: "1"))}", data: four, .wrongFieldType(tensor: "a", field: "shape", expected: "an array of integers")),
    Rejection("dtype F16", header: "{\(entry(dtype: "\"F16\""))}", data: four, .unsupportedDtype(tensor: "a", dtype: "F16")),
    Rejection("dtype BF16", header: "{\(entry(dtype: "\"BF16\""))}", data: four, .unsupportedDtype(tensor: "a", dtype: "BF16")),
    Rejection("dtype F64", header: "{\(entry(dtype: "\"F64\""))}", data: four, .unsupportedDtype(tensor: "a", dtype: "F64")),
    Rejection("negative dim", header: "{\(entry(shape: "[-1]"))}", data: four, .invalidDimension(tensor: "a", value: "-1")),
    Rejection("fractional dim", header: "{\(entry(shape: "[2.5]"))}", data: four, .invalidDimension(tensor: "a", value: "2.5")),
    Rejection("float-spelled dim", header: "{\(entry(shape: "[1.0]"))}", data: four, .invalidDimension(tensor: "a", value: "1.0")),
    Rejection("exponent dim", header: "{\(entry(shape: "[1e0]"))}", data: four, .invalidDimension(tensor: "a", value: "1e0")),
    Rejection("boolean dim", header: "{\(entry(shape: "[true]"))}", data: four, .invalidDimension(tensor: "a", value: "true")),
    Rejection("string dim", header: "{\(entry(shape: "[\"1\"]"))}", data: four, .invalidDimension(tensor: "a", value: "\"1\"")),
    Rejection("dim beyond Int", header: "{\(entry(shape: "[99999999999999999999]"))}", data: four, .invalidDimension(tensor: "a", value: "99999999999999999999")),
    Rejection("offsets reversed", header: "{\(entry(offsets: "[4,0]"))}", data: four, .invalidDataOffsets(tensor: "a", value: "[4, 0]")),
    Rejection("offsets negative", header: "{\(entry(offsets: "[-4,0]"))}", data: four, .invalidDataOffsets(tensor: "a", value: "[-4, 0]")),
    Rejection("one offset", header: "{\(entry(offsets: "[4]"))}", data: four, .invalidDataOffsets(tensor: "a", value: "[4]")),
    Rejection("three offsets", header: "{\(entry(offsets: "[0,4,8]"))}", data: four, .invalidDataOffsets(tensor: "a", value: "[0, 4, 8]")),
    Rejection("fractional offset", header: "{\(entry(offsets: "[0,4.0]"))}", data: four, .invalidDataOffsets(tensor: "a", value: "[0, 4.0]")),
    Rejection("offsets not array", header: "{\(entry(offsets: "\"0,4\""))}", data: four, .invalidDataOffsets(tensor: "a", value: "\"0,4\"")),
    Rejection("end past buffer", header: "{\(entry(shape: "[2]", offsets: "[0,8]"))}", data: four, .dataPastEnd(tensor: "a", end: 8, bufferSize: 4)),
    Rejection("shape needs more bytes", header: "{\(entry(shape: "[3]", offsets: "[0,8]"))}", data: floatBytes([1, 2]),
              .sizeMismatch(tensor: "a", shape: [3], expectedBytes: 12, actualBytes: 8)),
    Rejection("shape needs fewer bytes", header: "{\(entry(shape: "[]", offsets: "[0,8]"))}", data: floatBytes([1, 2]),
              .sizeMismatch(tensor: "a", shape: [], expectedBytes: 4, actualBytes: 8)),
    Rejection("shape overflows Int", header: "{\(entry(shape: "[4611686018427387904,4,0]", offsets: "[0,0]"))}",
              .shapeTooLarge(tensor: "a", shape: [4611686018427387904, 4, 0])),
    Rejection("overlap", header: "{\(entry("a", shape: "[2]", offsets: "[0,8]")),\(entry("b", shape: "[2]", offsets: "[4,12]"))}",
              data: floatBytes([1, 2, 3]), .overlap(tensor: "b", begin: 4, other: "a", otherRange: 0..<8)),
    Rejection("same range twice", header: "{\(entry("a")),\(entry("b"))}", data: four,
              .overlap(tensor: "b", begin: 0, other: "a", otherRange: 0..<4)),
    Rejection("empty tensor inside another", header: "{\(entry("a", shape: "[2]", offsets: "[0,8]")),\(entry("z", shape: "[0]", offsets: "[4,4]"))}",
              data: floatBytes([1, 2]), .overlap(tensor: "z", begin: 4, other: "a", otherRange: 0..<8)),
    Rejection("hole between tensors", header: "{\(entry("a")),\(entry("b", offsets: "[8,12]"))}", data: floatBytes([1, 2, 3]),
              .gap(tensor: "b", begin: 8, expected: 4)),
    Rejection("hole at start", header: "{\(entry(offsets: "[4,8]"))}", data: floatBytes([1, 2]), .gap(tensor: "a", begin: 4, expected: 0)),
    Rejection("trailing bytes", header: "{\(entry())}", data: floatBytes([1, 2]), .trailingBytes(count: 4)),
    Rejection("data but no tensors", header: "{}", data: [0], .trailingBytes(count: 1)),
]

@Test(arguments: rejections)
func safeTensorsRejects(_ r: Rejection) {
    let error = decodeError(r.bytes)
    #expect(error == r.error, "got \(error.map(String.init(describing:)) ?? "success")")
}

@Test func safeTensorsErrorMessagesNameTheTensor() {
    let e = SafeTensorsError.sizeMismatch(tensor: "blocks.0.mlp.fc1.weight", shape: [3], expectedBytes: 12, actualBytes: 8)
    #expect(e.description == "tensor 'blocks.0.mlp.fc1.weight': shape [3] needs 12 bytes but data_offsets span 8")
    #expect(SafeTensorsError.unsupportedDtype(tensor: "w", dtype: "BF16").description.contains("unsupported dtype BF16"))
    for r in rejections { #expect(!r.error.description.isEmpty) }
}

/// Every truncation and many single-byte corruptions of a valid file must decode or throw,
/// never trap or read out of bounds.
@Test func safeTensorsSurvivesCorruption() {
    let valid = SafeTensors.encode(
        ["w": Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]), "s": Tensor(scalar: 7), "z": Tensor(zeros: [0])],
        metadata: ["k": "v"])
    for n in 0..<valid.count { #expect(decodeError(Array(valid[..<n])) != nil, "prefix \(n)") }
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    for _ in 0..<5000 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        var bytes = valid
        bytes[Int(state >> 33) % bytes.count] = UInt8(truncatingIfNeeded: state >> 17)
        _ = try? SafeTensors.decode(bytes)
    }
}

// MARK: - Files

private func temporaryDirectory() throws -> String {
    let url = Scratch.url("safetensors")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url.path
}

@Test func safeTensorsFileWriteReadIsAtomicAndLeavesNoTemporary() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/model.safetensors"

    try SafeTensors.write(["w": Tensor([1, 2, 3, 4], shape: [2, 2])], metadata: ["step": "1"], to: path)
    try SafeTensors.write(["w": Tensor([5, 6], shape: [2]), "s": Tensor(scalar: 3)], metadata: ["step": "2"], to: path)
    let loaded = try SafeTensors.read(path: path)
    #expect(loaded.metadata == ["step": "2"])
    #expect(loaded.tensors["w"]?.shape == [2])
    #expect(loaded.tensors["w"]?.scalars == [5, 6])
    #expect(loaded.tensors["s"]?.scalars == [3])
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["model.safetensors"])
    #expect(try Array(Data(contentsOf: URL(fileURLWithPath: path))) == SafeTensors.encode(loaded.tensors, metadata: loaded.metadata))
}

@Test func safeTensorsFileErrors() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let missing = dir + "/missing.safetensors"
    #expect(throws: SafeTensorsError.io(operation: "open", path: missing, code: ENOENT)) { try SafeTensors.read(path: missing) }
    let nowhere = dir + "/no/such/dir/model.safetensors"
    #expect(throws: SafeTensorsError.io(operation: "open", path: nowhere, code: ENOENT)) {
        try SafeTensors.write(["a": Tensor(scalar: 1)], to: nowhere)
    }
    // A corrupt file surfaces the decoder's error.
    let corrupt = dir + "/corrupt.safetensors"
    try Data([1, 2, 3]).write(to: URL(fileURLWithPath: corrupt))
    #expect(throws: SafeTensorsError.fileTooShort(byteCount: 3)) { try SafeTensors.read(path: corrupt) }
}
