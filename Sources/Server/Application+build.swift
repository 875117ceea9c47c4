import Config
import Foundation
import Hummingbird
import HummingbirdCore
import ImageData
import Logging
import NIOPosix
import Prometheus
import ServiceLifecycle
import Store
import Trainer

/// Everything the routes share: the store, the trainer pool, the event bus, datasets and
/// inference. Built once by `buildApplication`.
final class ServerCore: Sendable {
    let configuration: ServerConfiguration
    let store: Store
    let bus: EventBus
    let pool: TrainerPool
    let datasets: DatasetRegistry
    let inference: InferenceService
    let prometheus: PrometheusCollectorRegistry
    let publicDir: String?
    let dataRoot: URL
    let logger: Logger
    let startedAt = Date()
    /// Held while a server on SQLite runs: one server per data directory. None on PostgreSQL,
    /// where nodes may share the data dir and leases keep them from training the same job.
    let dataDirLock: DataDirLock?
    /// Open event streams (`--max-streams`), ended first on shutdown.
    let streams: StreamRegistry
    /// Host / Origin allow-list (`--allowed-host`).
    let hosts: HostAllowList
    /// Per-connection limits and their counters.
    let limits: ConnectionLimits
    /// Rendered metric histories, reused until their job's row changes.
    let metricHistories = MetricHistoryCache()
    /// Other nodes' writes (PostgreSQL LISTEN/NOTIFY), turned into bus events so that streams
    /// of jobs trained elsewhere are live here too. None on SQLite and on workers.
    let changes: StoreWatch?

    init(configuration: ServerConfiguration, store: Store, bus: EventBus, pool: TrainerPool, datasets: DatasetRegistry,
         inference: InferenceService, prometheus: PrometheusCollectorRegistry, publicDir: String?, dataRoot: URL, logger: Logger,
         dataDirLock: DataDirLock?, changes: StoreWatch?) {
        self.dataDirLock = dataDirLock
        self.changes = changes
        let streams = StreamRegistry(limit: configuration.maxStreams)
        self.streams = streams
        hosts = HostAllowList(boundHost: configuration.host, extra: configuration.allowedHosts)
        limits = ConnectionLimits(headerTimeout: configuration.headerTimeoutSeconds, bodyIdleTimeout: configuration.bodyIdleTimeoutSeconds,
                                  idleTimeout: configuration.idleTimeoutSeconds, maxConnections: configuration.maxConnections,
                                  onQuiesce: { streams.shutdown() })
        self.dataRoot = dataRoot
        self.logger = logger
        self.configuration = configuration
        self.store = store
        self.bus = bus
        self.pool = pool
        self.datasets = datasets
        self.inference = inference
        self.prometheus = prometheus
        self.publicDir = publicDir
    }

    func datasetExists(_ id: String) -> Bool { datasets.exists(id) }

    /// The classes of a labelled dataset (nil: unlabelled, or it does not open).
    func datasetClasses(_ id: String) -> Int? {
        guard let info = try? datasets.open(id).info, info.labelled else { return nil }
        return info.classes.count
    }

    /// Runs blocking work (SQLite, file reads) on NIO's blocking thread pool: never on an event
    /// loop, and never holding one of the few threads of Swift's cooperative pool.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(body)
    }
}

public struct StartupError: Error, CustomStringConvertible {
    public let description: String
}

/// Builds the whole server from a configuration: `mimserve serve` runs it, tests run it on
/// an ephemeral port with a temporary data directory.
public func buildApplication(configuration c: ServerConfiguration,
                             onListening: @escaping @Sendable (String, Int) async -> Void = { _, _ in }) throws -> some ApplicationProtocol {
    let core = try makeCore(c, role: .api)
    let (router, _) = makeRouter(core)
    let host = c.host
    return Application(
        router: router,
        server: GuardedHTTP1Channel.builder(limits: core.limits),
        configuration: .init(address: .hostname(c.host, port: c.port), serverName: "MIMServe"),
        // Shut down after the HTTP server: by then every event stream has ended (they end as
        // soon as the server starts to quiesce), so running jobs checkpoint at once.
        services: [TrainerService(pool: core.pool, streams: core.streams, logger: core.logger)],
        onServerRunning: { channel in
            let port = channel.localAddress?.port ?? c.port
            core.hosts.listeningPort.store(port, ordering: .relaxed)
            await onListening(host, port)
        },
        logger: core.logger)
}

/// What a process is: an API node (`serve`, with or without trainer slots) or a worker.
enum NodeRole { case api, worker }

/// Opens the data directory (locking it on SQLite), the database (migrating it) and wires the
/// services; an API node on a shared database listens for other nodes' writes.
func makeCore(_ c: ServerConfiguration, role: NodeRole) throws -> ServerCore {
    let problems = c.problems(servesAPI: role == .api)
    if !problems.isEmpty { throw StartupError(description: problems.joined(separator: "; ")) }
    var logger = Logger(label: "mimserve")
    logger.logLevel = Logger.Level(rawValue: c.logLevel) ?? .info

    let dataRoot = URL(fileURLWithPath: c.dataDir, isDirectory: true).standardizedFileURL
    let datasetsDir = dataRoot.appendingPathComponent("datasets")
    let checkpoints = CheckpointDirectory(root: c.checkpointRoot)
    for (flag, dir) in [("data-dir", datasetsDir), ("checkpoint-dir", checkpoints.root)] {
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        } catch {
            throw StartupError(description: "\(flag): cannot create \(dir.path): \(error.localizedDescription)")
        }
    }
    let location = try c.databaseLocation()
    // A SQLite file is one process's: a second server on the data dir would train the same
    // jobs. On PostgreSQL, leases do that job, and nodes may share the data dir.
    let lock: DataDirLock?
    if case .sqlite = location { lock = try DataDirLock(directory: dataRoot) } else { lock = nil }
    logger.info("database: \(location)")
    let store = try Store(location, migrations: MigrationSet.locate(explicit: c.migrationsDir, dialect: location.dialect))
    let publicDir = c.locatePublic()
    var registryConfig = DatasetRegistry.Configuration(foldersRoot: datasetsDir.path,
                                                       samplesDirectory: publicDir.map { "\($0)/samples" })
    if let dir = c.fashionMNISTDir { registryConfig.fashionMNISTDirectory = dir }
    let datasets = DatasetRegistry(configuration: registryConfig)
    let bus = EventBus()
    let changes = role == .api ? store.watchChanges { change in
        switch change {
        case .job(let id): bus.publish(.stored(jobID: id))
        case .unknown: bus.wakeAll()
        }
    } : nil
    if let changes, !changes.waitUntilListening(seconds: 10) {
        logger.warning("not yet listening for other nodes' changes; event streams re-read the database every heartbeat until then")
    }
    let trainerLogger = logger
    var trainerOptions = TrainerOptions(
        slots: c.trainerSlots, checkpoints: checkpoints, dataSource: ImageDataSource.make(registry: datasets),
        log: { trainerLogger.notice("\($0)") })
    trainerOptions.nice = Int32(c.trainerNice)
    trainerOptions.leaseSeconds = c.leaseSeconds
    let pool = TrainerPool(store: store, bus: bus, options: trainerOptions)
    let inference = InferenceService(store: store, checkpoints: checkpoints, maxConcurrent: c.inferenceSlots,
                                     maxWaiting: c.inferenceQueue, maxBatch: c.inferenceBatch, cacheSize: c.modelCacheSize, maxPixels: c.maxPixels,
                                     onAdmitted: c.inferenceAdmitted)
    return ServerCore(configuration: c, store: store, bus: bus, pool: pool, datasets: datasets, inference: inference,
                      prometheus: PrometheusCollectorRegistry(), publicDir: publicDir, dataRoot: dataRoot, logger: logger,
                      dataDirLock: lock, changes: changes)
}

extension ServerCore {
    /// `text` with the server's own folders named by their flag instead of their absolute path:
    /// a client learns which dataset or file is at fault, never where the server keeps it.
    func withoutServerPaths(_ text: String) -> String {
        var folders = [(dataRoot.path, "<data-dir>"), (pool.options.checkpoints.root.path, "<checkpoint-dir>")]
        if let dir = configuration.fashionMNISTDir { folders.append((dir, "<fashion-mnist-dir>")) }
        if let dir = publicDir { folders.append((dir, "<public-dir>")) }
        return folders.sorted { $0.0.count > $1.0.count }.reduce(text) { t, f in
            f.0.isEmpty ? t : t.replacingOccurrences(of: f.0, with: f.1)
        }
    }
}

/// The router with every middleware and route; also returns the routes as "METHOD /path".
func makeRouter(_ core: ServerCore) -> (Router<BasicRequestContext>, [String]) {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: RequestMetricsMiddleware(registry: core.prometheus))
    router.add(middleware: ProblemMiddleware())
    router.add(middleware: HostOriginMiddleware(hosts: core.hosts))
    if let token = core.configuration.token, !token.isEmpty {
        router.add(middleware: BearerAuthMiddleware(token: Array(token.utf8), guardReads: core.configuration.guardsReads))
    }
    if let publicDir = core.publicDir {
        router.add(middleware: FileMiddleware(publicDir, searchForIndexHtml: true, logger: core.logger))
    } else {
        core.logger.warning("Public/ not found: the dashboard is not served (set --public-dir)")
    }
    var api = APIRoutes(router: router, core: core)
    api.addSystemRoutes()
    api.addJobRoutes()
    api.addEventRoutes()
    api.addInferenceRoutes()
    addMethodNotAllowed(router, api.registered)
    return (router, api.registered)
}

/// A known path asked with a method it does not serve answers 405 with `Allow` (RFC 9110
/// §15.5.6), not 404: the resource exists, the method is what is wrong.
private func addMethodNotAllowed(_ router: Router<BasicRequestContext>, _ routes: [String]) {
    var served: [(path: String, methods: [String])] = []
    for route in routes {
        let parts = route.split(separator: " ", maxSplits: 1).map(String.init)
        if let i = served.firstIndex(where: { $0.path == parts[1] }) { served[i].methods.append(parts[0]) } else { served.append((parts[1], [parts[0]])) }
    }
    let candidates: [HTTPRequest.Method] = [.get, .post, .put, .patch, .delete, .options, .trace] + [HTTPRequest.Method("QUERY")].compactMap { $0 }
    for (path, methods) in served {
        let allow = methods.joined(separator: ", ")
        for method in candidates where !methods.contains(method.rawValue) {
            router.on(RouterPath(path), method: method) { request, _ -> Response in
                var error = APIError(.methodNotAllowed, "Method not allowed", "\(path) answers \(allow), not \(request.method.rawValue)")
                error.headers[.allow] = allow
                return error.response()
            }
        }
    }
}

/// The trainer pool as a lifecycle service: started with the server; on graceful shutdown
/// every running job checkpoints and returns to the queue.
struct TrainerService: Service {
    let pool: TrainerPool
    let streams: StreamRegistry?
    let logger: Logger

    func run() async throws {
        try pool.start()
        try? await gracefulShutdown()
        streams?.shutdown()
        logger.notice("stopping the trainer pool (running jobs checkpoint and re-queue)")
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                pool.shutdown()
                c.resume()
            }
        }
    }
}
