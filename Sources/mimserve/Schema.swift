import ArgumentParser
import Config
import Foundation

/// `mimserve schema`: the JSON Schema of a job request, generated from `JobSchema`. With
/// `--openapi FILE` it writes the schema into that OpenAPI document as `JobRequest`, which is
/// how `Public/openapi.json` is kept in step (a test fails when it is not).
struct Schema: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the JSON Schema of a job request, or write it into an OpenAPI document.")

    @Option(help: "An OpenAPI document whose components.schemas.JobRequest is replaced in place.")
    var openapi: String?

    func run() throws {
        let schema = try JSONSerialization.jsonObject(with: JSONEncoder().encode(JobSchema.jsonSchema()))
        guard let path = openapi else {
            FileHandle.standardOutput.write(try Self.render(schema))
            return
        }
        let url = URL(fileURLWithPath: path)
        guard var document = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any],
              var components = document["components"] as? [String: Any],
              var schemas = components["schemas"] as? [String: Any] else {
            throw ValidationError("\(path) has no components.schemas")
        }
        schemas["JobRequest"] = schema
        components["schemas"] = schemas
        document["components"] = components
        try Self.render(document).write(to: url, options: .atomic)
    }

    /// Pretty, with sorted keys, so a regenerated document differs only where the schema did.
    static func render(_ object: Any) throws -> Data {
        var data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        data.append(UInt8(ascii: "\n"))
        return data
    }
}
