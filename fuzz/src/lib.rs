//! The checks behind the fuzz targets (one function per target, each taking the raw input).
//!
//! Every function must return normally for every input: a panic is a bug in the decoder (or
//! a broken property). For the binary codecs the property is canonicality: whatever a decoder
//! accepts re-encodes to exactly the input bytes. For the text formats (TOML, CSV, JSON) the
//! property is that the parse result is self-consistent and, where the type can be written
//! back, that writing and re-parsing gives the same value.

use std::{
    path::{Component, Path, PathBuf},
    sync::OnceLock,
};

use pouw_consensus::pouw::ProofData;
use pouw_ml::{Dataset, TaskFile};
use pouw_net::{GossipMessage, Request, Response, Topic};
use pouw_primitives::{
    codec, Block, ChainSpec, Hash, Header, IterationMessage, Transaction, MAX_BLOCK_BYTES,
    MAX_ITERATION_MESSAGE_BYTES, MAX_TX_BYTES,
};

/// The node's JSON-RPC request parser, compiled in from the RPC crate's source (its parser is
/// crate-private and depends on nothing but `serde_json`).
#[allow(dead_code, unreachable_pub, clippy::all)]
#[path = "../../crates/rpc/src/jsonrpc.rs"]
mod jsonrpc;

/// `decode` accepted `bytes` as a `T`: they must be its canonical encoding.
fn assert_canonical<T: borsh::BorshSerialize>(value: &T, bytes: &[u8], what: &str) {
    let again = codec::encode(value);
    assert!(again == bytes, "{what}: accepted bytes are not the canonical encoding");
}

/// `pouw_primitives::codec::decode_bounded::<Block>` (and the unbounded `decode`).
pub fn block(data: &[u8]) {
    let bounded = codec::decode_bounded::<Block>(data, MAX_BLOCK_BYTES);
    let plain = codec::decode::<Block>(data);
    assert_eq!(bounded.is_ok(), plain.is_ok(), "bounded and plain decoding disagree");
    if let Ok(b) = bounded {
        assert_canonical(&b, data, "Block");
        assert_eq!(b, plain.unwrap());
        // Derived values must not panic either.
        let _ = b.hash();
        let _ = Block::compute_tx_root(&b.transactions);
    }
}

/// `codec::decode::<Header>`.
pub fn header(data: &[u8]) {
    if let Ok(h) = codec::decode::<Header>(data) {
        assert_canonical(&h, data, "Header");
        let _ = h.hash();
        let _ = h.zero_nonce_hash();
    }
}

/// `codec::decode_bounded::<Transaction>` (the mempool's limit), plus signature checking.
pub fn transaction(data: &[u8]) {
    if let Ok(tx) = codec::decode_bounded::<Transaction>(data, MAX_TX_BYTES) {
        assert_canonical(&tx, data, "Transaction");
        assert_eq!(tx.size(), data.len());
        let _ = tx.hash();
        let _ = tx.verify_signature();
    }
}

/// `codec::decode_bounded::<IterationMessage>`, plus its id and map hash.
pub fn iteration_message(data: &[u8]) {
    if let Ok(m) = codec::decode_bounded::<IterationMessage>(data, MAX_ITERATION_MESSAGE_BYTES) {
        assert_canonical(&m, data, "IterationMessage");
        let _ = m.id();
        let _ = m.body.map_hash();
        let _ = m.body.miner.verify(m.id().as_bytes(), &m.signature);
    }
}

/// `pouw_consensus::pouw::ProofData::decode` (floats travel as bits: compare bytes, not values).
pub fn proof_data(data: &[u8]) {
    if let Ok(p) = ProofData::decode(data) {
        assert!(p.encode() == data, "ProofData: accepted bytes are not the canonical encoding");
        let _ = pouw_consensus::pouw::batch_hash_of(&p.batch);
    }
}

/// `GossipMessage::decode` on every topic: a message is accepted on its own topic only, and
/// accepted bytes are canonical.
pub fn gossip(data: &[u8]) {
    let mut topics = vec![Topic::Blocks, Topic::Transactions, Topic::Verification, Topic::Alerts];
    topics.push(Topic::Task(Hash::ZERO));
    // The task topic of the message itself, if the bytes are an iteration message.
    let decoded = codec::decode::<GossipMessage>(data);
    if let Ok(GossipMessage::MlIteration(m)) = &decoded {
        topics.push(Topic::Task(m.body.task_id));
    }
    let mut accepted = 0;
    for topic in &topics {
        match GossipMessage::decode(data, topic) {
            Ok(msg) => {
                assert_eq!(msg.topic(), *topic, "accepted on a topic it does not belong to");
                assert!(msg.encode() == data, "GossipMessage: accepted bytes not canonical");
                let _ = msg.kind().name();
                accepted += 1;
            }
            Err(_) => {}
        }
    }
    if let Ok(msg) = decoded {
        // Canonical and under its kind's limit: it must be accepted on its own topic.
        if data.len() <= GossipMessage::max_bytes(msg.kind()) {
            assert!(
                GossipMessage::decode(data, &msg.topic()).is_ok(),
                "a valid message is refused on its own topic"
            );
        }
    } else {
        assert_eq!(accepted, 0, "accepted bytes the codec refuses");
    }
}

/// `pouw_net::Request::decode`.
pub fn request(data: &[u8]) {
    if let Ok(r) = Request::decode(data) {
        assert!(r.encode() == data, "Request: accepted bytes are not canonical");
    }
}

/// `pouw_net::Response::decode`.
pub fn response(data: &[u8]) {
    if let Ok(r) = Response::decode(data) {
        assert!(r.encode() == data, "Response: accepted bytes are not canonical");
    }
}

/// A scratch directory for the targets that need files, one per process.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("pouw-fuzz-{}", std::process::id()));
        let mnist = dir.join("data").join("mnist");
        std::fs::create_dir_all(&mnist).expect("scratch dir");
        std::fs::create_dir_all(dir.join("tasks")).expect("scratch dir");
        // A tiny IDX pair under the shipped names (20 images of 28x28), so task files that
        // name the shipped data load quickly.
        let n = 20u32;
        let mut images = vec![0, 0, 8, 3];
        for d in [n, 28, 28] {
            images.extend_from_slice(&d.to_be_bytes());
        }
        images.extend((0..n * 784).map(|i| (i * 7 % 256) as u8));
        let mut labels = vec![0, 0, 8, 1];
        labels.extend_from_slice(&n.to_be_bytes());
        labels.extend((0..n).map(|i| (i % 10) as u8));
        for (name, bytes) in
            [("mnist-10k-images-idx3-ubyte.gz", images), ("mnist-10k-labels-idx1-ubyte.gz", labels)]
        {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&bytes).expect("gzip");
            std::fs::write(mnist.join(name), gz.finish().expect("gzip")).expect("write idx");
        }
        dir
    })
}

/// Dataset paths a fuzzed task file may make the client loader read: relative, at most one
/// leading `..`, so they stay inside the scratch directory (never `/dev/zero` and the like).
fn confined(p: &Path) -> bool {
    let mut parents = 0;
    for (i, c) in p.components().enumerate() {
        match c {
            Component::Normal(_) => {}
            Component::ParentDir if i == 0 => parents += 1,
            _ => return false,
        }
    }
    parents <= 1 && !p.as_os_str().is_empty()
}

/// The task file parsers: `pouw_ml::TaskFile::parse` (a round trip through TOML must give
/// the same task) and, for files whose dataset stays inside the scratch directory,
/// `pouw_ml::load_client_task` (path based: the input is written to a file first).
pub fn task_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let anchor = Path::new("task.toml");
    let Ok(task) = TaskFile::parse(text, anchor) else { return };
    let written = toml::to_string(&task).expect("a parsed task file serializes");
    let again = TaskFile::parse(&written, anchor)
        .unwrap_or_else(|e| panic!("written task file does not parse: {e}\n{written}"));
    assert!(
        format!("{again:?}") == format!("{task:?}"),
        "task file changed in a TOML round trip:\n{written}"
    );
    let d = &task.dataset;
    if [&d.images, &d.labels, &d.path].into_iter().flatten().all(|p| confined(p)) {
        let dir = scratch().join("tasks");
        let file = dir.join("fuzz-task.toml");
        std::fs::write(&file, data).expect("write task file");
        if let Ok(ct) = pouw_ml::load_client_task(&file, &dir) {
            assert_eq!(ct.segments.len(), pouw_primitives::DATASET_SEGMENTS);
            let def = codec::encode(&ct.definition);
            assert!(codec::decode::<pouw_primitives::TaskDefinition>(&def).is_ok());
        }
    }
}

/// `ChainSpec::from_toml`: an accepted spec writes back (`to_toml`) to a spec that parses to
/// the same value.
pub fn chain_spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(spec) = ChainSpec::from_toml(text, "fuzz") {
        let written = spec.to_toml();
        let again = ChainSpec::from_toml(&written, "written")
            .unwrap_or_else(|e| panic!("written chain spec does not parse: {e}\n{written}"));
        assert_eq!(again, spec, "chain spec changed in a TOML round trip");
        let _ = pouw_consensus::genesis_block(&spec);
    }
}

/// Checks a dataset a loader accepted.
fn check_dataset(d: &Dataset, classes: u32) {
    assert!(!d.is_empty());
    assert_eq!(d.features().len(), d.len() * d.width());
    assert_eq!(d.labels().len(), d.len());
    assert!(d.labels().iter().all(|&l| l < classes));
    assert!(d.features().iter().all(|v| v.is_finite()));
    if let Ok(segs) = d.segments(10.min(d.len())) {
        for s in &segs {
            let _ = d.segment_hash(s);
        }
    }
}

/// `Dataset::load_idx_bytes`. Input: `classes` (1 byte), the image part's length (u16 LE),
/// then the image bytes and the label bytes (each raw or gzip).
pub fn idx(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let classes = u32::from(data[0]);
    let split = usize::from(u16::from_le_bytes([data[1], data[2]])).min(data.len() - 3);
    let (images, labels) = data[3..].split_at(split);
    if let Ok(d) =
        Dataset::load_idx_bytes(Path::new("images"), images, Path::new("labels"), labels, classes)
    {
        check_dataset(&d, classes);
        assert!(d.features().iter().all(|v| (0.0..=1.0).contains(v)));
    }
}

/// `Dataset::load_csv` (path based: the input is written to a scratch file). Input:
/// `classes` (1 byte), then the CSV text.
pub fn csv(data: &[u8]) {
    let Some((&classes, text)) = data.split_first() else { return };
    let classes = u32::from(classes);
    let file = scratch().join("fuzz.csv");
    std::fs::write(&file, text).expect("write csv");
    if let Ok(d) = Dataset::load_csv(&file, classes) {
        check_dataset(&d, classes);
    }
}

/// `pouw_ml::from_safetensors` (model import: a model file from a peer, or one a user hands
/// to the client). An accepted model hashes as its metadata says, exports to bytes that import
/// to the same parameters bit for bit, fits its own spec unless a parameter is not finite, and
/// runs on one sample of its width without panicking; a sample of another width is an error.
pub fn safetensors(data: &[u8]) {
    use pouw_ml::{Exec, ModelError};
    let Ok(model) = pouw_ml::from_safetensors(data) else { return };
    let bytes = pouw_ml::to_safetensors(&model).expect("an imported model exports");
    let again = pouw_ml::from_safetensors(&bytes).expect("an exported model imports");
    assert_eq!(again.hash(), model.hash());
    assert!(
        again.params().iter().zip(model.params()).all(|(a, b)| a.to_bits() == b.to_bits()),
        "export and import changed a parameter"
    );
    let finite = model.params().iter().all(|v| v.is_finite());
    match model.check_fits(model.spec()) {
        Ok(()) => assert!(finite, "a model with a NaN parameter fits"),
        Err(ModelError::NonFinite { index }) => assert!(!model.params()[index].is_finite()),
        Err(e) => panic!("a model does not fit its own spec: {e}"),
    }
    let width = model.layout().inputs;
    let x = vec![0.5f32; width + 1];
    let metrics = model.evaluate(Exec::new(1), &x[..width], &[0], 1).expect("one sample");
    assert_eq!(metrics.samples, 1);
    assert!(model.evaluate(Exec::new(1), &x, &[0], 1).is_err(), "a sample of another width");
}

/// The JSON-RPC body parser (`parse_body`): every body gives calls or one error response, and
/// every response object serializes.
pub fn json_rpc(data: &[u8]) {
    use jsonrpc::{parse_body, response, Body, Call, RpcErr};
    let max_batch = 16;
    let calls = match parse_body(data, max_batch) {
        Body::Error(v) => {
            assert!(v.get("error").is_some(), "error body without an error");
            assert!(serde_json::to_vec(&v).is_ok());
            return;
        }
        Body::Single(c) => vec![c],
        Body::Batch(cs) => {
            assert!(!cs.is_empty() && cs.len() <= max_batch, "batch bounds not enforced");
            cs
        }
    };
    for call in calls {
        let id = call.response_id().cloned();
        let result = match call {
            Call::Request { method, params, .. } => {
                let p = jsonrpc::Params::new(params.as_ref());
                let _ = p.expect(&["a", "b"]);
                let _ = p.get(0, "a").map(|v| jsonrpc::as_u64(v, "a"));
                Ok(serde_json::Value::String(method))
            }
            Call::Invalid { error, .. } => Err(error),
        };
        if let Some(id) = id {
            let r = response(&id, result);
            assert!(serde_json::to_vec(&r).is_ok());
        }
    }
    let _ = RpcErr::invalid_params("x");
}
