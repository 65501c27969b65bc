//! The MNIST subset shipped in the repository (`data/mnist`, see its `PROVENANCE.md`), embedded
//! in the binary: filler tasks train on it, and every node must have exactly these bytes, so it
//! never comes from the file system.
//!
//! 10,000 digits, 28 x 28, classes 0-9, in the file order of the shipped IDX files.

use std::{path::Path, sync::OnceLock};

use crate::dataset::Dataset;

/// Number of classes of the shipped subset.
pub const SHIPPED_MNIST_CLASSES: u32 = 10;

const IMAGES_NAME: &str = "data/mnist/mnist-10k-images-idx3-ubyte.gz";
const LABELS_NAME: &str = "data/mnist/mnist-10k-labels-idx1-ubyte.gz";
static IMAGES: &[u8] = include_bytes!("../../../data/mnist/mnist-10k-images-idx3-ubyte.gz");
static LABELS: &[u8] = include_bytes!("../../../data/mnist/mnist-10k-labels-idx1-ubyte.gz");

/// The shipped subset, decoded once per process.
pub fn shipped_mnist_ref() -> &'static Dataset {
    static DATA: OnceLock<Dataset> = OnceLock::new();
    DATA.get_or_init(|| {
        Dataset::load_idx_bytes(
            Path::new(IMAGES_NAME),
            IMAGES,
            Path::new(LABELS_NAME),
            LABELS,
            SHIPPED_MNIST_CLASSES,
        )
        .expect("the embedded MNIST subset is a valid IDX pair (tested)")
    })
}

/// The shipped subset as an owned [`Dataset`] (a copy of [`shipped_mnist_ref`]).
pub fn shipped_mnist() -> Dataset {
    shipped_mnist_ref().clone()
}

/// Writes the embedded MNIST subset's two IDX files (gzip, as shipped) into `dir`, creating
/// it; returns the (images, labels) paths. For a task file that names them.
pub fn write_shipped_mnist(
    dir: &Path,
) -> std::io::Result<(std::path::PathBuf, std::path::PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let images = dir.join("mnist-10k-images-idx3-ubyte.gz");
    let labels = dir.join("mnist-10k-labels-idx1-ubyte.gz");
    std::fs::write(&images, IMAGES)?;
    std::fs::write(&labels, LABELS)?;
    Ok((images, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_subset_matches_the_files() {
        let d = shipped_mnist();
        assert_eq!(d.len(), 10_000);
        assert_eq!(d.sample_shape(), &[28, 28]);
        assert_eq!(d.classes(), SHIPPED_MNIST_CLASSES);
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let from_files =
            Dataset::load_idx(&root.join(IMAGES_NAME), &root.join(LABELS_NAME), 10).unwrap();
        assert_eq!(d.features(), from_files.features());
        assert_eq!(d.labels(), from_files.labels());
    }
}
