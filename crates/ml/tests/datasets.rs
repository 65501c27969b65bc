//! Dataset loaders: good files load, every malformed case gives a clear error naming the file.

use std::{io::Write, path::Path};

use pouw_ml::{Dataset, DatasetError};

fn idx(kind: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, kind, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// 3 images of 2x2 and their labels.
fn good_pair(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let images = idx(8, &[3, 2, 2], &[0, 255, 51, 102, 1, 2, 3, 4, 5, 6, 7, 8]);
    let labels = idx(8, &[3], &[0, 1, 2]);
    (write(dir, "img.idx", &images), write(dir, "lab.idx", &labels))
}

/// The error and its sources, as `anyhow`'s `{:#}` prints them.
fn err_text(e: &DatasetError) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

#[test]
fn idx_raw_and_gzip_load_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (img, lab) = good_pair(dir.path());
    let raw = Dataset::load_idx(&img, &lab, 3).unwrap();
    let img_gz = write(dir.path(), "img.gz", &gz(&std::fs::read(&img).unwrap()));
    let lab_gz = write(dir.path(), "lab.gz", &gz(&std::fs::read(&lab).unwrap()));
    let zipped = Dataset::load_idx(&img_gz, &lab_gz, 3).unwrap();
    assert_eq!(raw.features(), zipped.features());
    assert_eq!(raw.labels(), &[0, 1, 2]);
    assert_eq!(raw.sample_shape(), &[2, 2]);
    assert_eq!(raw.features()[1], 1.0);
    assert_eq!(raw.features()[2], 51.0 / 255.0);
}

#[test]
fn idx_malformed_cases() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (img, lab) = good_pair(d);
    let cases: Vec<(&str, std::path::PathBuf, std::path::PathBuf, &str)> = vec![
        ("empty", write(d, "empty.idx", b""), lab.clone(), "empty file"),
        ("magic", write(d, "magic.idx", b"PK\x03\x04rest"), lab.clone(), "wrong magic"),
        ("type", write(d, "type.idx", &idx(0x0d, &[1, 1], &[0; 4])), lab.clone(), "element type"),
        (
            "truncated",
            write(d, "trunc.idx", &idx(8, &[3, 2, 2], &[0; 11])),
            lab.clone(),
            "truncated",
        ),
        ("header", write(d, "hdr.idx", &[0, 0, 8, 3, 0, 0]), lab.clone(), "truncated"),
        (
            "trailing",
            write(d, "trail.idx", &idx(8, &[3, 2, 2], &[0; 13])),
            lab.clone(),
            "unexpected bytes",
        ),
        ("gzip", write(d, "bad.gz", &[0x1f, 0x8b, 8, 0, 1, 2, 3]), lab.clone(), "corrupt gzip"),
        ("count", img.clone(), write(d, "lab2.idx", &idx(8, &[2], &[0, 1])), "2 labels"),
        (
            "label",
            img.clone(),
            write(d, "lab9.idx", &idx(8, &[3], &[0, 9, 1])),
            "label 9 out of range",
        ),
        ("rank", img, write(d, "labr.idx", &idx(8, &[3, 1], &[0, 1, 2])), "rank 2"),
        ("missing", d.join("nope.idx"), lab, "No such file"),
    ];
    for (name, images, labels, needle) in cases {
        let e = Dataset::load_idx(&images, &labels, 3).expect_err(name);
        let msg = err_text(&e);
        assert!(msg.contains(needle), "{name}: {msg:?} lacks {needle:?}");
        let file = if name == "label" || name == "rank" { &labels } else { &images };
        assert!(
            msg.contains(&file.display().to_string()),
            "{name}: {msg:?} does not name the file"
        );
    }
}

#[test]
fn csv_good_file_with_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "d.csv", b"label,a,b\n1, 0.5,2\n\n0,-1e-3,0.1\n");
    let data = Dataset::load_csv(&p, 2).unwrap();
    assert_eq!(data.labels(), &[1, 0]);
    assert_eq!(&*data.features(), &[0.5, 2.0, -1e-3, 0.1]);
    assert_eq!(data.width(), 2);
}

#[test]
fn csv_malformed_cases() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 7] = [
        ("empty", b"", "empty file"),
        ("header only", b"label,x\n", "empty file"),
        ("nan", b"0,1\n1,NaN\n", "line 2, column 2: value is NaN or infinite"),
        ("inf", b"0,inf\n", "NaN or infinite"),
        ("columns", b"0,1,2\n1,2\n", "line 2: 2 columns, expected 3"),
        ("label", b"0,1\n7,1\n", "label 7 out of range"),
        ("text", b"0,1\n1,abc\n", "\"abc\" is not a number"),
    ];
    for (name, bytes, needle) in cases {
        let p = write(dir.path(), &format!("{}.csv", name.replace(' ', "_")), bytes);
        let e = Dataset::load_csv(&p, 3).expect_err(name);
        let msg = err_text(&e);
        assert!(msg.contains(needle), "{name}: {msg:?} lacks {needle:?}");
        assert!(msg.contains(&p.display().to_string()), "{name}: {msg:?} does not name the file");
    }
}

#[test]
fn full_size_idx_and_segments() {
    // 60,000 samples like the full MNIST training file (tiny images to keep it fast).
    let dir = tempfile::tempdir().unwrap();
    let n = 60_000u32;
    let pixels: Vec<u8> = (0..n * 4).map(|i| (i % 251) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let img = write(dir.path(), "i.gz", &gz(&idx(8, &[n, 2, 2], &pixels)));
    let lab = write(dir.path(), "l.gz", &gz(&idx(8, &[n], &labels)));
    let data = Dataset::load_idx(&img, &lab, 10).unwrap();
    assert_eq!(data.len(), 60_000);
    let segs = data.segments(10).unwrap();
    assert!(segs.iter().all(|s| s.len == 6_000));
    // A remainder is dropped: 7 samples in 3 segments of 2.
    let small =
        Dataset::from_parts("m".into(), vec![0.0; 7], (0..7).map(|i| i % 2).collect(), vec![1], 2)
            .unwrap();
    let segs = small.segments(3).unwrap();
    assert_eq!(segs.last().unwrap().start + segs.last().unwrap().len, 6);
    assert!(small.segments(8).is_err());
}

#[test]
fn every_byte_is_a_pixel_and_nothing_else_is() {
    for b in 0..=255u8 {
        assert_eq!(pouw_ml::pixel_byte(pouw_ml::pixel(b)), Some(b));
    }
    for v in [-0.0f32, 0.5, 1.0 + f32::EPSILON, -1.0 / 255.0, 256.0 / 255.0, f32::NAN, 1e-9] {
        assert_eq!(pouw_ml::pixel_byte(v), None, "{v}");
    }
    // The neighbours of a pixel are not pixels.
    let p = pouw_ml::pixel(77);
    assert_eq!(pouw_ml::pixel_byte(f32::from_bits(p.to_bits() + 1)), None);
    assert_eq!(pouw_ml::pixel_byte(f32::from_bits(p.to_bits() - 1)), None);
}

#[test]
fn pixel_data_is_held_as_bytes_and_reads_back_as_the_float_loader_gave_it() {
    let dir = tempfile::tempdir().unwrap();
    let (img, lab) = good_pair(dir.path());
    let d = Dataset::load_idx(&img, &lab, 3).unwrap();
    // 3 images of 2 x 2 bytes and 3 labels of 4 bytes.
    assert_eq!(d.memory_bytes(), 3 * 4 + 3 * 4);
    let floats = d.features().into_owned();
    let same = Dataset::from_parts(
        "floats".into(),
        floats.clone(),
        d.labels().to_vec(),
        d.sample_shape().to_vec(),
        3,
    )
    .unwrap();
    assert_eq!(same.memory_bytes(), d.memory_bytes(), "pixel values given as floats are compacted");
    let other: Vec<f32> = floats.iter().map(|v| v + 0.25).collect();
    let kept =
        Dataset::from_parts("other".into(), other.clone(), vec![0, 1, 2], vec![2, 2], 3).unwrap();
    assert_eq!(kept.memory_bytes(), 12 * 4 + 3 * 4);
    assert_eq!(&*kept.features(), &other[..]);
    let a = d.gather(&[2, 0]);
    let b = same.gather(&[2, 0]);
    assert_eq!(a.canonical_bytes(), b.canonical_bytes());
    assert_eq!(&a.features()[..4], &floats[8..12]);
}
