import Foundation
import GRDB

/// Where a job is in its life. `paused` is a stop with intent to resume from a checkpoint.
public enum JobState: String, Codable, Sendable, CaseIterable, DatabaseValueConvertible {
    case queued, running, paused, succeeded, failed, cancelled

    public var isTerminal: Bool { self == .succeeded || self == .failed || self == .cancelled }

    /// The only legal moves. `running → queued` is the start-up re-queue of a job whose
    /// process died; `paused → queued` is resume.
    public var successors: Set<JobState> {
        switch self {
        case .queued: [.running, .cancelled]
        case .running: [.succeeded, .failed, .cancelled, .paused, .queued]
        case .paused: [.queued, .cancelled]
        case .succeeded, .failed, .cancelled: []
        }
    }
}

public struct JobRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "jobs"

    public var id: String
    public var seq: Int64
    public var method: String
    public var preset: String
    /// The fully resolved job configuration, as JSON text (the Store never interprets it).
    public var configJSON: String
    public var datasetID: String
    public var state: JobState
    public var step: Int
    public var totalSteps: Int
    public var loss: Double?
    public var lr: Double?
    public var imagesPerS: Double?
    public var etaS: Double?
    public var peakRSSMB: Double?
    public var error: String?
    public var idempotencyKey: String?
    public var requestHash: String?
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    public var updatedAt: Date
    /// The trainer holding the job's lease while it runs (`Store.workerID()`: host and pid);
    /// nil in every other state. Written only by claims; an insert leaves it out.
    public var worker: String?
    /// Times a crash or an expired lease took the job from its trainer.
    public var interruptions: Int = 0

    enum CodingKeys: String, CodingKey, ColumnExpression {
        case id, seq, method, preset, state, step, loss, lr, error, interruptions
        case configJSON = "config_json", datasetID = "dataset_id", totalSteps = "total_steps"
        case imagesPerS = "images_per_s", etaS = "eta_s", peakRSSMB = "peak_rss_mb", idempotencyKey = "idempotency_key"
        case requestHash = "request_hash", createdAt = "created_at", startedAt = "started_at"
        case finishedAt = "finished_at", updatedAt = "updated_at", worker = "lease_owner"
    }
}

/// One logged training step.
public struct MetricRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "metrics"

    public var jobID: String
    /// 1-based: the step whose loss this is.
    public var step: Int
    public var loss: Double
    public var lr: Double
    public var imagesPerS: Double?
    /// Training seconds since the job first started (pauses and restarts excluded).
    public var wallTimeS: Double

    public init(jobID: String, step: Int, loss: Double, lr: Double, imagesPerS: Double?, wallTimeS: Double) {
        self.jobID = jobID
        self.step = step
        self.loss = loss
        self.lr = lr
        self.imagesPerS = imagesPerS
        self.wallTimeS = wallTimeS
    }

    enum CodingKeys: String, CodingKey, ColumnExpression {
        case step, loss, lr
        case jobID = "job_id", imagesPerS = "images_per_s", wallTimeS = "wall_time_s"
    }
}

public struct CheckpointRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "checkpoints"

    public var jobID: String
    public var step: Int
    /// Relative to the checkpoint directory (`--checkpoint-dir`).
    public var path: String
    public var bytes: Int64
    public var sha256: String
    public var isFinal: Bool
    public var createdAt: Date
    /// The lease the trainer wrote it under (set by the store from the write's lease; nil for
    /// writes without one and for rows older than leases).
    public var leaseOwner: String?
    public var leaseToken: String?

    public init(jobID: String, step: Int, path: String, bytes: Int64, sha256: String, isFinal: Bool, createdAt: Date = Date(),
                leaseOwner: String? = nil, leaseToken: String? = nil) {
        self.jobID = jobID
        self.step = step
        self.path = path
        self.bytes = bytes
        self.sha256 = sha256
        self.isFinal = isFinal
        self.createdAt = createdAt
        self.leaseOwner = leaseOwner
        self.leaseToken = leaseToken
    }

    /// The same checkpoint, named as written under `lease`.
    func written(under lease: Lease?) -> CheckpointRecord {
        var c = self
        c.leaseOwner = lease?.owner
        c.leaseToken = lease?.token
        return c
    }

    enum CodingKeys: String, CodingKey, ColumnExpression {
        case step, path, bytes, sha256
        case jobID = "job_id", isFinal = "is_final", createdAt = "created_at"
        case leaseOwner = "lease_owner", leaseToken = "lease_token"
    }
}

/// A state change, checkpoint or evaluation, in order, so live streams can replay what a
/// client missed.
public struct JobEventRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "job_events"

    public enum Kind: String, Codable, Sendable, DatabaseValueConvertible {
        case state, checkpoint, evaluation
    }

    public var id: Int64?
    public var jobID: String
    public var kind: Kind
    public var dataJSON: String
    public var createdAt: Date

    enum CodingKeys: String, CodingKey, ColumnExpression {
        case id, kind
        case jobID = "job_id", dataJSON = "data_json", createdAt = "created_at"
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

public struct DatasetRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "datasets"

    public var id: String
    public var kind: String
    public var name: String
    public var path: String?
    public var imageCount: Int
    public var classesJSON: String?
    public var imageSize: Int?
    public var licence: String?
    public var createdAt: Date

    public init(id: String, kind: String, name: String, path: String?, imageCount: Int, classesJSON: String?,
                imageSize: Int?, licence: String?, createdAt: Date = Date()) {
        self.id = id
        self.kind = kind
        self.name = name
        self.path = path
        self.imageCount = imageCount
        self.classesJSON = classesJSON
        self.imageSize = imageSize
        self.licence = licence
        self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey, ColumnExpression {
        case id, kind, name, path, licence
        case imageCount = "image_count", classesJSON = "classes_json", imageSize = "image_size", createdAt = "created_at"
    }
}

public struct EvaluationRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "evaluations"

    public var id: Int64?
    public var jobID: String
    public var datasetID: String
    public var step: Int
    public var resultJSON: String
    public var createdAt: Date

    public init(jobID: String, datasetID: String, step: Int, resultJSON: String, createdAt: Date = Date()) {
        self.jobID = jobID
        self.datasetID = datasetID
        self.step = step
        self.resultJSON = resultJSON
        self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey, ColumnExpression {
        case id
        case jobID = "job_id", datasetID = "dataset_id", step, resultJSON = "result_json", createdAt = "created_at"
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// What a client may do to a job. The server refuses an action its job's state does not list,
/// and the dashboard offers exactly the listed ones (`actions` of every job resource).
public enum JobAction: String, Codable, Sendable, CaseIterable {
    case pause, resume, cancel, delete
}

extension JobState {
    public var actions: [JobAction] {
        switch self {
        case .queued: [.cancel, .delete]
        case .running: [.pause, .cancel]
        case .paused: [.resume, .cancel, .delete]
        case .succeeded, .failed, .cancelled: [.delete]
        }
    }
}
