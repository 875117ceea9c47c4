import Foundation
import PostgresNIO

// Records from PostgreSQL rows, by column position: each `postgresColumns` is the SELECT list
// its `init(postgres:)` reads, so the two are written side by side.

extension JobRecord {
    static let postgresColumns = """
        id, seq, method, preset, config_json, dataset_id, state, step, total_steps, loss, lr, images_per_s, eta_s, \
        peak_rss_mb, error, idempotency_key, request_hash, created_at, started_at, finished_at, updated_at, lease_owner, interruptions
        """

    init(postgres row: PostgresRow) throws {
        let (id, seq, method, preset, configJSON, datasetID, state, step, totalSteps, loss, lr, imagesPerS, etaS, peak,
             error, key, hash, created, started, finished, updated, worker, interruptions) =
            try row.decode((String, Int64, String, String, String, String, String, Int, Int, Double?, Double?, Double?, Double?,
                            Double?, String?, String?, String?, Date, Date?, Date?, Date, String?, Int).self)
        guard let jobState = JobState(rawValue: state) else { throw StoreError.database("job \(id) has an unknown state '\(state)'") }
        self.init(id: id, seq: seq, method: method, preset: preset, configJSON: configJSON, datasetID: datasetID, state: jobState,
                  step: step, totalSteps: totalSteps, loss: loss, lr: lr, imagesPerS: imagesPerS, etaS: etaS, peakRSSMB: peak,
                  error: error, idempotencyKey: key, requestHash: hash, createdAt: created, startedAt: started,
                  finishedAt: finished, updatedAt: updated)
        self.worker = worker
        self.interruptions = interruptions
    }
}

extension MetricRecord {
    static let postgresColumns = "job_id, step, loss, lr, images_per_s, wall_time_s"

    init(postgres row: PostgresRow) throws {
        let (jobID, step, loss, lr, imagesPerS, wallTimeS) = try row.decode((String, Int, Double, Double, Double?, Double).self)
        self.init(jobID: jobID, step: step, loss: loss, lr: lr, imagesPerS: imagesPerS, wallTimeS: wallTimeS)
    }
}

extension CheckpointRecord {
    static let postgresColumns = "job_id, step, path, bytes, sha256, is_final, created_at, lease_owner, lease_token"

    init(postgres row: PostgresRow) throws {
        let (jobID, step, path, bytes, sha256, isFinal, createdAt, owner, token) =
            try row.decode((String, Int, String, Int64, String, Bool, Date, String?, String?).self)
        self.init(jobID: jobID, step: step, path: path, bytes: bytes, sha256: sha256, isFinal: isFinal, createdAt: createdAt,
                  leaseOwner: owner, leaseToken: token)
    }
}

extension JobEventRecord {
    static let postgresColumns = "id, job_id, kind, data_json, created_at"

    init(postgres row: PostgresRow) throws {
        let (id, jobID, kind, dataJSON, createdAt) = try row.decode((Int64, String, String, String, Date).self)
        guard let k = Kind(rawValue: kind) else { throw StoreError.database("event \(id) has an unknown kind '\(kind)'") }
        self.init(id: id, jobID: jobID, kind: k, dataJSON: dataJSON, createdAt: createdAt)
    }
}

extension DatasetRecord {
    static let postgresColumns = "id, kind, name, path, image_count, classes_json, image_size, licence, created_at"

    init(postgres row: PostgresRow) throws {
        let (id, kind, name, path, imageCount, classesJSON, imageSize, licence, createdAt) =
            try row.decode((String, String, String, String?, Int, String?, Int?, String?, Date).self)
        self.init(id: id, kind: kind, name: name, path: path, imageCount: imageCount, classesJSON: classesJSON,
                  imageSize: imageSize, licence: licence, createdAt: createdAt)
    }
}

extension EvaluationRecord {
    static let postgresColumns = "id, job_id, dataset_id, step, result_json, created_at"

    init(postgres row: PostgresRow) throws {
        let (id, jobID, datasetID, step, resultJSON, createdAt) = try row.decode((Int64, String, String, Int, String, Date).self)
        self.init(jobID: jobID, datasetID: datasetID, step: step, resultJSON: resultJSON, createdAt: createdAt)
        self.id = id
    }
}
