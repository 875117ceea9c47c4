import ArgumentParser
import Foundation
import Server

/// `mimserve worker`: trainer slots on a shared PostgreSQL queue, with probes on their own port.
struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train jobs from a PostgreSQL queue shared with API nodes; serves only /healthz, /readyz and /metrics.")

    @OptionGroup var node: NodeOptions

    func run() async throws {
        let env = EnvironmentSettings()
        var c = ServerConfiguration()
        try node.apply(to: &c, env, defaultPort: 9090)
        guard c.database != nil else {
            throw ValidationError("--database (or MIMSERVE_DATABASE) is required: the PostgreSQL database the API nodes use")
        }
        do {
            let app = try buildWorker(configuration: c) { host, port in
                FileHandle.standardOutput.write(Data("MIMServe worker probes on http://\(host):\(port)\n".utf8))
            }
            try await app.runService()
        } catch let error as StartupError {
            throw ValidationError(error.description)
        }
    }
}
