//! Keeping the Berth binary out of the container's reach (the CVE-2019-5736 class).
