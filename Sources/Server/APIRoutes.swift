import Config
import Foundation
import Hummingbird

/// Registers routes and remembers them as "METHOD /path" so a test can hold the OpenAPI
/// document and the router in step.
struct APIRoutes {
    let router: Router<BasicRequestContext>
    let core: ServerCore
    private(set) var registered: [String] = []

    init(router: Router<BasicRequestContext>, core: ServerCore) {
        self.router = router
        self.core = core
    }

    typealias Handler = @Sendable (Request, BasicRequestContext) async throws -> Response

    mutating func on(_ method: HTTPRequest.Method, _ path: String, _ handler: @escaping Handler) {
        registered.append("\(method.rawValue) \(path)")
        router.on(RouterPath(path), method: method, use: handler)
    }
}

/// Reading request parts with errors that name what is wrong.
extension Request {
    /// The body, up to the server's limit (413 past it).
    func bytes(limit: Int) async throws -> [UInt8] {
        if let length = headers[.contentLength].flatMap(Int.init), length > limit { throw HTTPError(.contentTooLarge) }
        var buffer = try await body.collect(upTo: limit)
        return buffer.readBytes(length: buffer.readableBytes) ?? []
    }

    func query(_ name: String) -> String? { uri.queryParameters.get(name) }

    func queryInt(_ name: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let raw = query(name) else { return nil }
        guard let v = Int(raw), range.contains(v) else {
            throw APIError.invalid(name, "must be an integer in \(range.lowerBound)…\(range.upperBound), got '\(raw)'")
        }
        return v
    }

    func queryFloat(_ name: String, in range: ClosedRange<Float>, open: Bool = false) throws -> Float? {
        guard let raw = query(name) else { return nil }
        guard let v = Float(raw), v.isFinite, range.contains(v), !open || (v > range.lowerBound && v < range.upperBound) else {
            let interval = open ? "(\(range.lowerBound), \(range.upperBound))" : "[\(range.lowerBound), \(range.upperBound)]"
            throw APIError.invalid(name, "must be a number in \(interval), got '\(raw)'")
        }
        return v
    }

    func queryEnum<T: RawRepresentable & CaseIterable>(_ name: String, _ type: T.Type) throws -> T? where T.RawValue == String {
        guard let raw = query(name) else { return nil }
        guard let v = T(rawValue: raw) else {
            throw APIError.invalid(name, "must be one of \(T.allCases.map(\.rawValue).joined(separator: ", ")), got '\(raw)'")
        }
        return v
    }
}

extension BasicRequestContext {
    func id(_ name: String = "id") throws -> String {
        guard let v = parameters.get(name) else { throw APIError.badRequest("missing path parameter \(name)") }
        return v
    }

    func step() throws -> Int {
        guard let raw = parameters.get("step"), let step = Int(raw) else { throw APIError.invalid("step", "must be an integer") }
        return step
    }
}

/// Decodes a JSON body into `T`, turning every decoding failure into a 400 or a 422 that names the field.
func decodeJSON<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
    guard !bytes.isEmpty else { throw APIError.badRequest("the body is empty; send a JSON object") }
    do {
        return try JSONDecoder().decode(T.self, from: Data(bytes))
    } catch let DecodingError.keyNotFound(key, context) {
        throw APIError.invalid(path(context.codingPath + [key]), "is required")
    } catch let DecodingError.typeMismatch(type, context) {
        throw APIError.invalid(path(context.codingPath), "has the wrong type (expected \(describe(type)))")
    } catch let DecodingError.valueNotFound(type, context) {
        throw APIError.invalid(path(context.codingPath), "must not be null (expected \(describe(type)))")
    } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
        throw APIError.invalid(path(context.codingPath), context.debugDescription)
    } catch {
        throw APIError.badRequest("the body is not valid JSON: \((error as NSError).userInfo[NSDebugDescriptionErrorKey] ?? "\(error)")")
    }
}

/// The field a decoding error is about; the body itself (a top-level value of the wrong kind) is `body`.
private func path(_ keys: [any CodingKey]) -> String {
    if keys.isEmpty { return "body" }
    return keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
}

private func describe(_ type: Any.Type) -> String {
    switch type {
    case is Int.Type, is UInt64.Type: "an integer"
    case is Float.Type, is Double.Type: "a number"
    case is String.Type: "a string"
    case is Bool.Type: "true or false"
    default: type is any Collection.Type ? "an array" : "an object"
    }
}
