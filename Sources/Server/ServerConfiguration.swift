import Config
import Foundation
import Store

/// Every setting of the server, in one place. The `mimserve serve` command fills it from
/// flags, then `MIMSERVE_*` environment variables, then these defaults.
public struct ServerConfiguration: Sendable {
    /// `--host` / `MIMSERVE_HOST`: address to bind. Default `127.0.0.1` (loopback only).
    public var host = "127.0.0.1"
    /// `--port` / `MIMSERVE_PORT`: TCP port; 0 picks a free one (printed at start). Default 8080.
    public var port = 8080
    /// `--data-dir` / `MIMSERVE_DATA_DIR`: dataset folders and, by default, the checkpoints and the SQLite file. Default `./data`.
    public var dataDir = "./data"
    /// `--checkpoint-dir` / `MIMSERVE_CHECKPOINT_DIR`: the checkpoint files, which in a cluster
    /// every node mounts (workers write them, API nodes serve downloads and inference from
    /// them). Default `<data-dir>/checkpoints`.
    public var checkpointDir: String?
    public var checkpointRoot: URL {
        checkpointDir.map { URL(fileURLWithPath: $0, isDirectory: true).standardizedFileURL }
            ?? URL(fileURLWithPath: dataDir, isDirectory: true).standardizedFileURL.appendingPathComponent("checkpoints", isDirectory: true)
    }
    /// `--database` / `MIMSERVE_DATABASE`: where jobs, metrics and events are stored:
    /// `sqlite:PATH` (one file, one machine) or `postgres://USER:PASSWORD@HOST:PORT/DATABASE`
    /// (several nodes can share it; `?host=/socket/dir` for a unix socket, `?schema=NAME`,
    /// `?sslmode=`, `?pool=N`: see `DatabaseLocation`). Default `sqlite:<data-dir>/mimserve.sqlite`.
    /// The password is never logged nor shown in an error.
    public var database: String?
    /// `--trainer-slots` / `MIMSERVE_TRAINER_SLOTS`: jobs trained at once. Default 1 (2 cores: one job uses both).
    /// 0 on `serve` makes an API node that trains nothing (workers on a shared database do).
    public var trainerSlots = 1
    /// `--lease-seconds` / `MIMSERVE_LEASE_SECONDS`: how long a trainer holds a claimed job
    /// without a heartbeat (renewed every third of it). When it lapses, the next claim from any
    /// node takes the job back. Default 30.
    public var leaseSeconds = Store.defaultLeaseSeconds
    /// `--max-body-bytes` / `MIMSERVE_MAX_BODY_BYTES`: largest request body; more gets 413. Default 32 MiB.
    public var maxBodyBytes = 32 << 20
    /// `--max-job-body-bytes` / `MIMSERVE_MAX_JOB_BODY_BYTES`: largest job submission
    /// (`POST /v1/jobs`, JSON); more gets 413. Default 1 MiB (a request is a few hundred bytes).
    public var maxJobBodyBytes = 1 << 20
    /// `--max-pixels` / `MIMSERVE_MAX_PIXELS`: largest decoded image (width × height); more gets 422
    /// before any pixel is decoded. Default 40 000 000.
    public var maxPixels = 40_000_000
    /// `--max-request-pixels` / `MIMSERVE_MAX_REQUEST_PIXELS`: the pixels all images of one
    /// reconstruct or features request may declare together (every header is read first, before
    /// any decoding); more gets 422 naming `images`. Default: `--max-pixels`, so one request
    /// decodes no more than one largest image would, however its images are split.
    public var maxRequestPixels: Int?
    var requestPixelBudget: Int { maxRequestPixels ?? maxPixels }
    /// `--trainer-nice` / `MIMSERVE_TRAINER_NICE`: nice value (0…19) of the trainer slots'
    /// threads, so requests are answered first while jobs keep every core busy. Default 0 (the
    /// server's own priority). Measured with a tiny job training and 16 connections reading the
    /// metrics history: p99 18–21 ms at 0, 16–17 ms at 10, which costs that tiny job ~15% of
    /// its steps per second when its data loader competes for the cores.
    public var trainerNice = 0
    /// `--max-job-memory` / `MIMSERVE_MAX_JOB_MEMORY`: bytes one job may need at its peak, by the
    /// cost model (`ModelConfig.estimate`); a bigger submission gets 422 naming `batch_size` (or
    /// the preset) with the estimate and the limit. Default: physical memory × 0.5 ÷ trainer slots.
    public var maxJobMemory: Int?
    var jobMemoryLimit: Int {
        maxJobMemory ?? Int(Double(ProcessInfo.processInfo.physicalMemory) * 0.5) / max(1, trainerSlots)
    }
    /// `--max-job-disk` / `MIMSERVE_MAX_JOB_DISK`: bytes one job's kept checkpoints may take
    /// (`keep_checkpoints` + the final one, each weights and both AdamW moments). Default 32 GiB.
    public var maxJobDisk = 32 << 30
    /// `--max-queued` / `MIMSERVE_MAX_QUEUED`: jobs that may wait for a trainer slot; one more
    /// submission gets 429 with Retry-After. Default 100.
    public var maxQueued = 100
    /// `--inference-slots` / `MIMSERVE_INFERENCE_SLOTS`: forward passes (reconstruct, features)
    /// and evaluations or exports running at once. Default 2.
    public var inferenceSlots = 2
    /// `--inference-queue` / `MIMSERVE_INFERENCE_QUEUE`: reconstruct and features requests that
    /// may wait for a slot (they are then batched); one more, or an evaluation or export that
    /// finds no free slot, gets 503 with Retry-After. Default 16.
    public var inferenceQueue = 16
    /// `--inference-batch` / `MIMSERVE_INFERENCE_BATCH`: images one forward pass takes from the
    /// waiting requests for the same checkpoint and task. Default 8.
    public var inferenceBatch = 8
    /// Tests only: runs on an inference request's thread once it holds its slot, before any work,
    /// so a test can keep the slot busy for as long as it needs instead of racing a timer.
    var inferenceAdmitted: (@Sendable () -> Void)?
    /// `--model-cache` / `MIMSERVE_MODEL_CACHE`: checkpoints kept loaded for inference. Default 4.
    public var modelCacheSize = 4
    /// `--token` / `MIMSERVE_TOKEN`: bearer token for mutating calls (and reads, see `authReads`).
    /// Required when `host` is not a loopback address. Only ever read from the `Authorization`
    /// header, never from the query string. Never logged.
    public var token: String?
    /// `--auth-reads` / `MIMSERVE_AUTH_READS` (true/false): with a token set, GET requests need it
    /// too. Default: on whenever a token is set. `/healthz`, `/readyz`, `/openapi.json` and the
    /// dashboard's static files stay open; `/metrics` is guarded (it names jobs and their losses).
    public var authReads: Bool?
    var guardsReads: Bool { !(token ?? "").isEmpty && (authReads ?? true) }
    /// `--allowed-host` / `MIMSERVE_ALLOWED_HOSTS` (comma-separated): more names the `Host`
    /// header may carry, as `name` (any port) or `name:port`; `*` turns the check off (behind a
    /// proxy that checks it). Always allowed: the bound address, `localhost`, `127.0.0.1` and
    /// `[::1]`, without a port or with the port the server listens on. Anything else gets 421
    /// (DNS-rebinding defence), and a POST/PUT/PATCH/DELETE whose `Origin` is not
    /// `http(s)://<allowed host>` gets 403.
    public var allowedHosts: [String] = []

    /// `--header-timeout` / `MIMSERVE_HEADER_TIMEOUT`: seconds a client may take to send a
    /// request's head, from its first byte (a head trickled a byte at a time is closed too).
    /// Default 10.
    public var headerTimeoutSeconds = 10.0
    /// `--body-idle-timeout` / `MIMSERVE_BODY_IDLE_TIMEOUT`: seconds a request body may go
    /// without a byte arriving before the connection is closed. Default 30.
    public var bodyIdleTimeoutSeconds = 30.0
    /// `--idle-timeout` / `MIMSERVE_IDLE_TIMEOUT`: seconds a keep-alive connection may sit with
    /// no request before it is closed (a response being written, such as an event stream, is
    /// never idle). Default 60.
    public var idleTimeoutSeconds = 60.0
    /// `--max-connections` / `MIMSERVE_MAX_CONNECTIONS`: open HTTP connections; one more is
    /// answered 503 (Retry-After: 1) and closed at once. Default 512.
    public var maxConnections = 512
    /// `--max-streams` / `MIMSERVE_MAX_STREAMS`: event streams open at once; one more gets 503
    /// with Retry-After. Default 32.
    public var maxStreams = 32
    /// `--log-level` / `MIMSERVE_LOG_LEVEL`: trace, debug, info, notice, warning, error. Default info.
    public var logLevel = "info"
    /// `--public-dir` / `MIMSERVE_PUBLIC_DIR`: the dashboard's static files. Default: `Public/`
    /// found beside the executable, in `../share/mimserve`, in the source tree, or in the working directory.
    public var publicDir: String?
    /// `--migrations-dir` / `MIMSERVE_MIGRATIONS`: the folder holding `sqlite/` and `postgres/` SQL
    /// migrations, found like `publicDir` by default.
    public var migrationsDir: String?
    /// `--fashion-mnist-dir` / `MIMSERVE_FASHION_MNIST_DIR`: Debian's dataset-fashion-mnist files.
    public var fashionMNISTDir: String?

    /// `--sse-heartbeat` / `MIMSERVE_SSE_HEARTBEAT`: seconds between keep-alive comments on
    /// event streams, so proxies keep idle streams open. Default 15.
    public var sseHeartbeatSeconds = 15.0

    public init() {}

    public var isLoopback: Bool {
        ["127.0.0.1", "localhost", "::1"].contains(host) || host.hasPrefix("127.")
    }

    /// `database` read, or the SQLite file in the data directory.
    public func databaseLocation() throws(StoreError) -> DatabaseLocation {
        guard let database, !database.isEmpty else {
            return .sqlite(path: URL(fileURLWithPath: dataDir).appendingPathComponent("mimserve.sqlite").path)
        }
        return try DatabaseLocation(parsing: database)
    }

    /// Problems that stop the server from starting, each naming its setting. A worker
    /// (`servesAPI` false) answers only probes, which need no token on any address.
    public func problems(servesAPI: Bool = true) -> [String] {
        var p: [String] = []
        if !(0...65535).contains(port) { p.append("port: must be in 0…65535, got \(port)") }
        if !(0...16).contains(trainerSlots) { p.append("trainer-slots: must be in 0…16, got \(trainerSlots)") }
        if !(leaseSeconds >= 1 && leaseSeconds <= 3600) { p.append("lease-seconds: must be in 1…3600 s, got \(leaseSeconds)") }
        if !(1...16).contains(inferenceSlots) { p.append("inference-slots: must be in 1…16, got \(inferenceSlots)") }
        if !(0...256).contains(inferenceQueue) { p.append("inference-queue: must be in 0…256, got \(inferenceQueue)") }
        if !(1...64).contains(inferenceBatch) { p.append("inference-batch: must be in 1…64, got \(inferenceBatch)") }
        if !(1...64).contains(modelCacheSize) { p.append("model-cache: must be in 1…64, got \(modelCacheSize)") }
        if maxBodyBytes < 1024 { p.append("max-body-bytes: must be ≥ 1024, got \(maxBodyBytes)") }
        if maxJobBodyBytes < 1024 { p.append("max-job-body-bytes: must be ≥ 1024, got \(maxJobBodyBytes)") }
        if !(sseHeartbeatSeconds >= 0.05 && sseHeartbeatSeconds <= 3600) { p.append("sse-heartbeat: must be in 0.05…3600 s, got \(sseHeartbeatSeconds)") }
        if let m = maxJobMemory, m < 64 << 20 { p.append("max-job-memory: must be at least 64 MiB (67108864), got \(m)") }
        if !(0...19).contains(trainerNice) { p.append("trainer-nice: must be in 0…19, got \(trainerNice)") }
        if maxJobDisk < 1 << 20 { p.append("max-job-disk: must be at least 1 MiB (1048576), got \(maxJobDisk)") }
        if !(1...1_000_000).contains(maxQueued) { p.append("max-queued: must be in 1…1000000, got \(maxQueued)") }
        if let r = maxRequestPixels, r < 64 { p.append("max-request-pixels: must be ≥ 64, got \(r)") }
        if maxPixels < 64 { p.append("max-pixels: must be ≥ 64, got \(maxPixels)") }
        for (name, v) in [("header-timeout", headerTimeoutSeconds), ("body-idle-timeout", bodyIdleTimeoutSeconds),
                          ("idle-timeout", idleTimeoutSeconds)] where !(v >= 0.05 && v <= 86400) {
            p.append("\(name): must be in 0.05…86400 s, got \(v)")
        }
        if !(1...100_000).contains(maxConnections) { p.append("max-connections: must be in 1…100000, got \(maxConnections)") }
        if !(1...10_000).contains(maxStreams) { p.append("max-streams: must be in 1…10000, got \(maxStreams)") }
        for h in allowedHosts where h.isEmpty || h.contains(where: { $0 == "/" || $0 == " " || $0 == "," }) {
            p.append("allowed-host: '\(h)' is not a host name (name or name:port)")
        }
        do { _ = try databaseLocation() } catch { p.append(error.description) }
        if let t = token, t.count < 8 { p.append("token: must be at least 8 characters") }
        if servesAPI && !isLoopback && (token ?? "").isEmpty {
            p.append("token: binding to \(host) (not loopback) requires a token (--token or MIMSERVE_TOKEN)")
        }
        return p
    }

    /// `Public/` by the same search as the migrations.
    func locatePublic(sourceFile: String = #filePath) -> String? {
        if let publicDir { return publicDir }
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath().deletingLastPathComponent()
        let sourceRoot = URL(fileURLWithPath: sourceFile).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let candidates = [executable.appendingPathComponent("Public"),
                          executable.appendingPathComponent("../share/mimserve/Public").standardized,
                          sourceRoot.appendingPathComponent("Public"),
                          URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("Public")]
        return candidates.first { FileManager.default.fileExists(atPath: $0.appendingPathComponent("index.html").path) }?.path
            ?? candidates.first { FileManager.default.fileExists(atPath: $0.appendingPathComponent("openapi.json").path) }?.path
    }
}
