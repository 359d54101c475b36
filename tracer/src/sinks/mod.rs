//! Where calls go once decoded: lines for people and for machines ([`line`]), the wall clock
//! they are stamped with ([`clock`]), the units they are measured in ([`units`]) and the
//! latency histograms that summarise them ([`histogram`]). Trace files are a sink too, with
//! a room of their own (`record`). Nothing here touches the kernel.

pub(crate) mod clock;
pub(crate) mod histogram;
pub(crate) mod line;
pub(crate) mod units;
