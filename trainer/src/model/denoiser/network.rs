//! The seam between the EDM wrapper and its raw network: which network a
//! config names ([`NetworkConfig`], the `--arch` value, with the JSON form
//! old runs wrote) and what the wrapper needs of it ([`Network`]).

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::operator::{Denoiser, DenoiserConfig};
use crate::error::Error;
use crate::model::unet::{Unet, UnetConfig};

/// The raw network of an EDM model: the FNO-type [`Denoiser`] (the default,
/// and what the device runs) or the U-shaped [`Unet`] (host only).
///
/// In JSON an FNO config is the plain [`DenoiserConfig`] object, exactly as
/// before the U-Net existed, so old runs' `config.json` files read and
/// compare unchanged; a U-Net config is its [`UnetConfig`] object with
/// `"arch": "unet"` added.
#[derive(Clone, Debug, PartialEq)]
pub enum NetworkConfig {
    /// The FNO-type operator denoiser.
    Fno(DenoiserConfig),
    /// The U-shaped convolutional denoiser.
    Unet(UnetConfig),
}

impl From<DenoiserConfig> for NetworkConfig {
    fn from(c: DenoiserConfig) -> Self {
        Self::Fno(c)
    }
}

impl From<UnetConfig> for NetworkConfig {
    fn from(c: UnetConfig) -> Self {
        Self::Unet(c)
    }
}

impl NetworkConfig {
    /// `"fno"` or `"unet"` (the `--arch` value).
    pub fn arch(&self) -> &'static str {
        match self {
            Self::Fno(_) => "fno",
            Self::Unet(_) => "unet",
        }
    }

    /// Data channels `C`.
    pub fn channels(&self) -> usize {
        match self {
            Self::Fno(c) => c.channels,
            Self::Unet(c) => c.channels,
        }
    }

    /// The FNO config, if this is one.
    pub fn fno(&self) -> Option<&DenoiserConfig> {
        match self {
            Self::Fno(c) => Some(c),
            Self::Unet(_) => None,
        }
    }

    /// Checks the sizes of either network.
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            Self::Fno(c) => c.validate(),
            Self::Unet(c) => c.validate(),
        }
    }

    /// Whether an `n x n` grid can be run.
    pub fn check_resolution(&self, n: usize) -> Result<(), Error> {
        match self {
            Self::Fno(c) => c.check_resolution(n),
            Self::Unet(c) => c.check_resolution(n),
        }
    }

    /// Parameter count of the network, in closed form.
    pub fn param_count(&self) -> usize {
        match self {
            Self::Fno(c) => c.param_count(),
            Self::Unet(c) => c.param_count(),
        }
    }
}

impl serde::Serialize for NetworkConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Fno(c) => c.serialize(s),
            Self::Unet(c) => {
                #[derive(serde::Serialize)]
                struct Tagged<'a> {
                    arch: &'static str,
                    #[serde(flatten)]
                    config: &'a UnetConfig,
                }
                Tagged { arch: "unet", config: c }.serialize(s)
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for NetworkConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut value = serde_json::Value::deserialize(d)?;
        let arch = value.as_object_mut().and_then(|o| o.remove("arch"));
        match arch.as_ref().map(|a| a.as_str()) {
            None | Some(Some("fno")) => serde_json::from_value(value).map(Self::Fno).map_err(D::Error::custom),
            Some(Some("unet")) => serde_json::from_value(value).map(Self::Unet).map_err(D::Error::custom),
            _ => Err(D::Error::custom(format!(
                "unknown denoiser arch {}, expected \"fno\" or \"unet\"",
                arch.unwrap_or_default()
            ))),
        }
    }
}

/// What [`EdmModel`](super::EdmModel) needs of its raw network `N(x_in; c_noise)`: one
/// forward on `[batch, C, n, n]` with `c_noise: [batch]`, and a constructor
/// from the matching [`NetworkConfig`] variant.
pub trait Network<B: Backend>: Module<B> + burn::module::ModuleDisplay {
    /// The `--arch` name of this network.
    const ARCH: &'static str;

    /// `N(x_in; c_noise)`, `[batch, C, n, n]` in and out.
    fn forward_net(&self, x_in: Tensor<B, 4>, c_noise: Tensor<B, 1>) -> Tensor<B, 4>;

    /// A fresh network from `cfg`, or `None` if `cfg` is another architecture.
    fn build(cfg: &NetworkConfig, device: &B::Device) -> Option<Self>;
}

impl<B: Backend> Network<B> for Denoiser<B> {
    const ARCH: &'static str = "fno";

    fn forward_net(&self, x_in: Tensor<B, 4>, c_noise: Tensor<B, 1>) -> Tensor<B, 4> {
        self.forward(x_in, c_noise)
    }

    fn build(cfg: &NetworkConfig, device: &B::Device) -> Option<Self> {
        cfg.fno().map(|c| c.init(device))
    }
}

impl<B: Backend> Network<B> for Unet<B> {
    const ARCH: &'static str = "unet";

    fn forward_net(&self, x_in: Tensor<B, 4>, c_noise: Tensor<B, 1>) -> Tensor<B, 4> {
        self.forward(x_in, c_noise)
    }

    fn build(cfg: &NetworkConfig, device: &B::Device) -> Option<Self> {
        match cfg {
            NetworkConfig::Unet(c) => Some(c.init(device)),
            NetworkConfig::Fno(_) => None,
        }
    }
}
