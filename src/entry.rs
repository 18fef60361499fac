//! The Rust side of the instrumented module's entry points (ABI section 11): the signature of
//! `ri_sandbox_call_{name}` is the export's with an `i64` budget put first among the
//! parameters and an `i64` gas-left put last among the results. These traits build that
//! signature from a [`TypedExport`](crate::TypedExport)'s, so its hot path is one typed
//! wasmtime call, with no global written or read around it.
//!
//! They are implemented for `()`, the numeric types wasmtime passes by value (`i32`, `u32`,
//! `i64`, `u64`, `f32`, `f64`) and tuples of up to eight of them: the signatures
//! [`Sandbox::typed`](crate::Sandbox::typed) accepts.

use wasmtime::{WasmParams, WasmResults, WasmTy};

mod sealed {
    pub trait Sealed {}
}

/// Parameters of a [`TypedExport`](crate::TypedExport): an entry point takes them after the
/// gas budget.
pub trait EntryParams: WasmParams + Sized + sealed::Sealed {
    /// The entry point's parameters: `(i64, Self...)`.
    #[doc(hidden)]
    type WithBudget: WasmParams;
    /// Puts the budget first.
    #[doc(hidden)]
    fn with_budget(self, budget: i64) -> Self::WithBudget;
}

/// Results of a [`TypedExport`](crate::TypedExport): an entry point returns them before the
/// gas left.
pub trait EntryResults: WasmResults + Sized + sealed::Sealed {
    /// The entry point's results: `(Self..., i64)`.
    #[doc(hidden)]
    type WithGas: WasmResults;
    /// Splits the gas left off.
    #[doc(hidden)]
    fn split(with_gas: Self::WithGas) -> (Self, i64);
}

impl sealed::Sealed for () {}

impl EntryParams for () {
    type WithBudget = (i64,);
    fn with_budget(self, budget: i64) -> (i64,) {
        (budget,)
    }
}

impl EntryResults for () {
    type WithGas = (i64,);
    fn split(with_gas: (i64,)) -> ((), i64) {
        ((), with_gas.0)
    }
}

macro_rules! scalar {
    ($($t:ty)*) => {$(
        impl sealed::Sealed for $t {}

        impl EntryParams for $t {
            type WithBudget = (i64, $t);
            fn with_budget(self, budget: i64) -> (i64, $t) {
                (budget, self)
            }
        }

        impl EntryResults for $t {
            type WithGas = ($t, i64);
            fn split(with_gas: ($t, i64)) -> ($t, i64) {
                with_gas
            }
        }
    )*};
}

scalar!(i32 u32 i64 u64 f32 f64);

macro_rules! tuple {
    ($($name:ident)+) => {
        impl<$($name: WasmTy),+> sealed::Sealed for ($($name,)+) {}

        #[allow(non_snake_case)]
        impl<$($name: WasmTy),+> EntryParams for ($($name,)+) {
            type WithBudget = (i64, $($name,)+);
            fn with_budget(self, budget: i64) -> Self::WithBudget {
                let ($($name,)+) = self;
                (budget, $($name,)+)
            }
        }

        #[allow(non_snake_case)]
        impl<$($name: WasmTy),+> EntryResults for ($($name,)+) {
            type WithGas = ($($name,)+ i64);
            fn split(with_gas: Self::WithGas) -> (Self, i64) {
                let ($($name,)+ gas) = with_gas;
                (($($name,)+), gas)
            }
        }
    };
}

tuple!(A);
tuple!(A B);
tuple!(A B C);
tuple!(A B C D);
tuple!(A B C D E);
tuple!(A B C D E F);
tuple!(A B C D E F G);
tuple!(A B C D E F G H);
