import ArgumentParser
import Foundation
import Hummingbird
import Server

/// `mimserve serve`: the HTTP API and dashboard, with trainer slots of its own unless 0.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the HTTP server and the trainer pool.")

    @OptionGroup var node: NodeOptions

    @Option(help: "Largest request body in bytes (MIMSERVE_MAX_BODY_BYTES; default 33554432).") var maxBodyBytes: Int?
    @Option(help: "Largest image in pixels, checked before decoding (MIMSERVE_MAX_PIXELS; default 40000000).") var maxPixels: Int?
    @Option(help: "Pixels all images of one inference request may declare together (MIMSERVE_MAX_REQUEST_PIXELS; default: --max-pixels).") var maxRequestPixels: Int?
    @Option(help: "Bytes one job may need at its peak, by the cost model (MIMSERVE_MAX_JOB_MEMORY; default: RAM × 0.5 ÷ trainer slots).") var maxJobMemory: Int?
    @Option(help: "Bytes one job's kept checkpoints may take (MIMSERVE_MAX_JOB_DISK; default 34359738368).") var maxJobDisk: Int?
    @Option(help: "Jobs that may wait in the queue; more get 429 (MIMSERVE_MAX_QUEUED; default 100).") var maxQueued: Int?
    @Option(help: "Largest job submission body in bytes (MIMSERVE_MAX_JOB_BODY_BYTES; default 1048576).") var maxJobBodyBytes: Int?
    @Option(help: "Inference forward passes, evaluations and exports running at once (MIMSERVE_INFERENCE_SLOTS; default 2).") var inferenceSlots: Int?
    @Option(help: "Reconstruct and features requests that may wait for a slot, to be batched; more get 503 (MIMSERVE_INFERENCE_QUEUE; default 16).") var inferenceQueue: Int?
    @Option(help: "Images one inference forward pass takes from waiting requests for the same checkpoint (MIMSERVE_INFERENCE_BATCH; default 8).") var inferenceBatch: Int?
    @Option(help: "Checkpoints kept loaded for inference (MIMSERVE_MODEL_CACHE; default 4).") var modelCache: Int?
    @Option(help: "Bearer token required for changes, and for reads unless --auth-reads false (MIMSERVE_TOKEN). Read from the Authorization header only.") var token: String?
    @Option(help: "With a token: GETs under /v1/ and /metrics need it too; /healthz, /readyz, /openapi.json and the dashboard stay open (MIMSERVE_AUTH_READS; default true when a token is set).") var authReads: Bool?
    @Option(help: ArgumentHelp("Another name the Host header may carry, as name or name:port; repeatable; * turns the check off (MIMSERVE_ALLOWED_HOSTS, comma-separated). Always allowed: the bound address, localhost, 127.0.0.1, [::1], with no port or the listening port.", valueName: "host")) var allowedHost: [String] = []
    @Option(help: "Seconds a client may take to send a request head, from its first byte (MIMSERVE_HEADER_TIMEOUT; default 10).") var headerTimeout: Double?
    @Option(help: "Seconds a request body may go without a byte before the connection closes (MIMSERVE_BODY_IDLE_TIMEOUT; default 30).") var bodyIdleTimeout: Double?
    @Option(help: "Seconds a keep-alive connection may wait for its next request (MIMSERVE_IDLE_TIMEOUT; default 60).") var idleTimeout: Double?
    @Option(help: "Open HTTP connections; one more is answered 503 and closed (MIMSERVE_MAX_CONNECTIONS; default 512).") var maxConnections: Int?
    @Option(help: "Event streams open at once; one more gets 503 with Retry-After (MIMSERVE_MAX_STREAMS; default 32).") var maxStreams: Int?
    @Option(help: "Dashboard folder (MIMSERVE_PUBLIC_DIR; default: Public/ found near the executable).") var publicDir: String?
    @Option(help: "Seconds between SSE keep-alive comments (MIMSERVE_SSE_HEARTBEAT; default 15).") var sseHeartbeat: Double?

    func run() async throws {
        let env = EnvironmentSettings()
        func pick<T>(_ flag: T?, _ key: String, _ parse: (String) -> T?) throws -> T? { try env.pick(flag, key, parse) }
        var c = ServerConfiguration()
        try node.apply(to: &c, env, defaultPort: c.port)
        c.maxBodyBytes = try pick(maxBodyBytes, "MAX_BODY_BYTES", Int.init) ?? c.maxBodyBytes
        c.maxPixels = try pick(maxPixels, "MAX_PIXELS", Int.init) ?? c.maxPixels
        c.maxRequestPixels = try pick(maxRequestPixels, "MAX_REQUEST_PIXELS", Int.init)
        c.maxJobMemory = try pick(maxJobMemory, "MAX_JOB_MEMORY", Int.init)
        c.maxJobDisk = try pick(maxJobDisk, "MAX_JOB_DISK", Int.init) ?? c.maxJobDisk
        c.maxQueued = try pick(maxQueued, "MAX_QUEUED", Int.init) ?? c.maxQueued
        c.maxJobBodyBytes = try pick(maxJobBodyBytes, "MAX_JOB_BODY_BYTES", Int.init) ?? c.maxJobBodyBytes
        c.inferenceSlots = try pick(inferenceSlots, "INFERENCE_SLOTS", Int.init) ?? c.inferenceSlots
        c.inferenceQueue = try pick(inferenceQueue, "INFERENCE_QUEUE", Int.init) ?? c.inferenceQueue
        c.inferenceBatch = try pick(inferenceBatch, "INFERENCE_BATCH", Int.init) ?? c.inferenceBatch
        c.modelCacheSize = try pick(modelCache, "MODEL_CACHE", Int.init) ?? c.modelCacheSize
        c.token = try pick(token, "TOKEN", { $0 })
        c.authReads = try pick(authReads, "AUTH_READS", { ["true": true, "1": true, "false": false, "0": false][$0.lowercased()] })
        c.allowedHosts = allowedHost.isEmpty
            ? (env.values["MIMSERVE_ALLOWED_HOSTS"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            : allowedHost
        c.headerTimeoutSeconds = try pick(headerTimeout, "HEADER_TIMEOUT", Double.init) ?? c.headerTimeoutSeconds
        c.bodyIdleTimeoutSeconds = try pick(bodyIdleTimeout, "BODY_IDLE_TIMEOUT", Double.init) ?? c.bodyIdleTimeoutSeconds
        c.idleTimeoutSeconds = try pick(idleTimeout, "IDLE_TIMEOUT", Double.init) ?? c.idleTimeoutSeconds
        c.maxConnections = try pick(maxConnections, "MAX_CONNECTIONS", Int.init) ?? c.maxConnections
        c.maxStreams = try pick(maxStreams, "MAX_STREAMS", Int.init) ?? c.maxStreams
        c.publicDir = try pick(publicDir, "PUBLIC_DIR", { $0 })
        c.sseHeartbeatSeconds = try pick(sseHeartbeat, "SSE_HEARTBEAT", Double.init) ?? c.sseHeartbeatSeconds
        let problems = c.problems()
        if !problems.isEmpty { throw ValidationError(problems.joined(separator: "\n")) }
        let app = try buildApplication(configuration: c) { host, port in
            FileHandle.standardOutput.write(Data("MIMServe listening on http://\(host):\(port)\n".utf8))
        }
        try await app.runService()
    }
}
