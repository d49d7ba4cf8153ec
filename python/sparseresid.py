"""ctypes binding for libsparseresid (the C library in this repository).

Thin and Pythonic: models and residuals are objects with context managers,
tensors come back as numpy arrays that Python allocates and the library fills
in place, failures raise SparseResidError carrying the library's status code
and its sresid_last_error() message.

The shared library is found in this order: the SPARSERESID_LIB environment
variable (a path), ../lib/libsparseresid.so.1 relative to this file (a build
tree), then the system loader's search path.

    import sparseresid as sr
    with sr.Model.open("base.safetensors") as a, sr.Model.open("ft.safetensors") as b:
        with sr.Residual(a, b, skip_mismatched=True) as r:
            print(r.norms()["relative"], r.unpaired())

SPDX-License-Identifier: MIT
"""

import ctypes
import os
import signal
import threading
import weakref
from ctypes import (CFUNCTYPE, POINTER, Structure, byref, c_char_p, c_double, c_int,
                    c_int32, c_int64, c_size_t, c_uint32, c_uint64, c_void_p)

import numpy as np

__all__ = [
    "SparseResidError", "Model", "Residual", "version", "version_number", "strerror",
    "set_threads", "get_threads", "blas_arch", "dtype_name", "dtype_size", "kind_name",
]

# ---- constants: copies of include/sparseresid/common.h, model.h, residual.h ----
# (Keep in step with the headers; tests/python checks them against the library
# where it can.)

# common.h: status codes
OK = 0
ERR_INVALID_ARG = 1
ERR_NOMEM = 2
ERR_IO = 3
ERR_TRUNCATED = 4
ERR_HEADER = 5
ERR_JSON = 6
ERR_DTYPE = 7
ERR_SHAPE = 8
ERR_OFFSETS = 9
ERR_DUPLICATE = 10
ERR_METADATA = 11
ERR_NOT_FOUND = 12
ERR_MISMATCH = 13
ERR_OVERFLOW = 14
ERR_NONFINITE = 15
ERR_UNSUPPORTED = 16
ERR_FORMAT = 17
ERR_CANCELLED = 18

# common.h: version of the header this binding was written against (make
# check compares them with include/sparseresid/common.h)
VERSION_MAJOR = 1
VERSION_MINOR = 1
VERSION_PATCH = 0
VERSION_NUMBER = VERSION_MAJOR * 10000 + VERSION_MINOR * 100 + VERSION_PATCH
VERSION_STRING = "1.1.0"

# model.h: dtypes
DTYPE_BOOL = 1
DTYPE_U8 = 2
DTYPE_I8 = 3
DTYPE_F8_E5M2 = 4
DTYPE_F8_E4M3 = 5
DTYPE_I16 = 6
DTYPE_U16 = 7
DTYPE_F16 = 8
DTYPE_BF16 = 9
DTYPE_I32 = 10
DTYPE_U32 = 11
DTYPE_F32 = 12
DTYPE_F64 = 13
DTYPE_I64 = 14
DTYPE_U64 = 15

# model.h: kinds
KIND_OTHER = 0
KIND_ATTENTION = 1
KIND_MLP = 2
KIND_EMBEDDING = 3
KIND_NORM = 4
KIND_COUNT = 5

# model.h: layouts and flags
LAYOUT_OUT_FIRST = 0
LAYOUT_OUT_LAST = 1
OPEN_KEEP_PAGES = 0x1
ADD_BORROW = 0x1
SAVE_NO_CLOBBER = 0x1
RULES_REPLACE = 0x1

# residual.h
PAIR_SKIP_MISMATCHED = 0x1
UNPAIRED_BASE_ONLY = 1
UNPAIRED_TRAINED_ONLY = 2
UNPAIRED_SHAPE = 3
UNPAIRED_NOT_FLOAT = 4
ALL = c_size_t(-1).value  # SRESID_ALL == SIZE_MAX

_LAYOUTS = {"out-first": LAYOUT_OUT_FIRST, "out-last": LAYOUT_OUT_LAST}
_KINDS = {"other": KIND_OTHER, "attention": KIND_ATTENTION, "mlp": KIND_MLP,
          "embedding": KIND_EMBEDDING, "norm": KIND_NORM}
_UNPAIRED_REASONS = {
    UNPAIRED_BASE_ONLY: "base-only",
    UNPAIRED_TRAINED_ONLY: "trained-only",
    UNPAIRED_SHAPE: "shape",
    UNPAIRED_NOT_FLOAT: "not-float",
}
# numpy dtype -> safetensors dtype, and the numpy dtype read_raw returns.
_FROM_NUMPY = {
    np.dtype(np.bool_): DTYPE_BOOL, np.dtype(np.uint8): DTYPE_U8, np.dtype(np.int8): DTYPE_I8,
    np.dtype(np.int16): DTYPE_I16, np.dtype(np.uint16): DTYPE_U16,
    np.dtype(np.float16): DTYPE_F16, np.dtype(np.int32): DTYPE_I32,
    np.dtype(np.uint32): DTYPE_U32, np.dtype(np.float32): DTYPE_F32,
    np.dtype(np.float64): DTYPE_F64, np.dtype(np.int64): DTYPE_I64,
    np.dtype(np.uint64): DTYPE_U64,
}
_TO_NUMPY = {
    DTYPE_BOOL: np.bool_, DTYPE_U8: "<u1", DTYPE_I8: "<i1", DTYPE_F8_E5M2: "<u1",
    DTYPE_F8_E4M3: "<u1", DTYPE_I16: "<i2", DTYPE_U16: "<u2", DTYPE_F16: "<f2",
    DTYPE_BF16: "<u2", DTYPE_I32: "<i4", DTYPE_U32: "<u4", DTYPE_F32: "<f4",
    DTYPE_F64: "<f8", DTYPE_I64: "<i8", DTYPE_U64: "<u8",
}


# ---- structs (model.h, residual.h); field order and types as in C ----
class _ModelOpts(Structure):
    _fields_ = [("size", c_size_t), ("layout", c_int32), ("flags", c_uint32)]


class _TensorInfo(Structure):
    _fields_ = [("size", c_size_t), ("name", c_char_p), ("role", c_char_p),
                ("shape", POINTER(c_int64)), ("data", c_void_p), ("nbytes", c_uint64),
                ("numel", c_int64), ("rows", c_int64), ("cols", c_int64),
                ("dtype", c_int32), ("ndim", c_int32), ("kind", c_int32), ("layer", c_int32)]


class _SaveOpts(Structure):
    _fields_ = [("size", c_size_t), ("flags", c_uint32)]


class _PairOpts(Structure):
    _fields_ = [("size", c_size_t), ("flags", c_uint32)]


class _Norms(Structure):
    _fields_ = [("size", c_size_t), ("base", c_double), ("trained", c_double),
                ("residual", c_double), ("relative", c_double)]


# ---- structs (probe.h) ----

class _Moments(Structure):
    _fields_ = [("size", c_size_t), ("count", c_uint64), ("nonfinite", c_uint64),
                ("mean", c_double), ("m2", c_double), ("m3", c_double), ("m4", c_double),
                ("min", c_double), ("max", c_double)]


class _MomentStats(Structure):
    _fields_ = [("size", c_size_t), ("count", c_uint64), ("nonfinite", c_uint64),
                ("mean", c_double), ("variance", c_double), ("skewness", c_double),
                ("kurtosis", c_double), ("min", c_double), ("max", c_double)]


class _EntropyResult(Structure):
    _fields_ = [("size", c_size_t), ("count", c_uint64), ("bits", c_double),
                ("random_bits", c_double), ("ratio", c_double)]


class _KmeansOpts(Structure):
    _fields_ = [("size", c_size_t), ("seed", c_uint64), ("max_iter", c_int32),
                ("reserved", c_int32), ("n_init", c_int32), ("reserved2", c_int32)]


class _KmeansResult(Structure):
    _fields_ = [("size", c_size_t), ("k", c_int32), ("iterations", c_int32),
                ("explained", c_double), ("explained_random", c_double),
                ("difference", c_double)]


class _SparsityResult(Structure):
    _fields_ = [("size", c_size_t), ("elements_for_energy", c_double * 3), ("hoyer", c_double),
                ("energy_in_top", c_double * 3)]


class _NullResult(Structure):
    _fields_ = [("size", c_size_t), ("draws", c_int32), ("reserved", c_int32),
                ("observed", c_double), ("mean", c_double), ("std", c_double), ("z", c_double)]


_F32P = c_void_p  # const float * (numpy data pointers)
_MAT = [_F32P, c_int64, c_int64, c_int64]  # x, rows, cols, ld

# probe.h (bound when the loaded library has them: see _load)
_PROBE_PROTOTYPES = {
    "sresid_moments_init": (c_int32, [POINTER(_Moments)]),
    "sresid_moments_add": (c_int32, [POINTER(_Moments)] + _MAT),
    "sresid_moments_merge": (c_int32, [POINTER(_Moments), POINTER(_Moments)]),
    "sresid_moments_stats": (c_int32, [POINTER(_Moments), POINTER(_MomentStats)]),
    "sresid_histogram_create": (c_int32, [c_int32, c_double, c_double, POINTER(c_void_p)]),
    "sresid_histogram_free": (None, [c_void_p]),
    "sresid_histogram_add": (c_int32, [c_void_p] + _MAT),
    "sresid_histogram_merge": (c_int32, [c_void_p, c_void_p]),
    "sresid_histogram_counts": (c_int32, [c_void_p, c_void_p, c_size_t]),
    "sresid_histogram_outside": (c_uint64, [c_void_p]),
    "sresid_histogram_entropy": (c_int32, [c_void_p, POINTER(c_double)]),
    "sresid_entropy": (c_int32, _MAT + [c_int32, c_uint64, POINTER(_EntropyResult)]),
    "sresid_entropy_random": (c_int32, [c_uint64, c_int32, c_uint64, POINTER(c_double)]),
    "sresid_participation_ratio": (c_int32, _MAT + [POINTER(c_double), POINTER(c_double)]),
    "sresid_correlation": (c_int32, [_F32P, _F32P, c_size_t, POINTER(c_double)]),
    "sresid_lowfreq_ratio": (c_int32, _MAT + [c_double, POINTER(c_double)]),
    "sresid_kmeans_fit": (c_int32, _MAT + [c_int32, POINTER(_KmeansOpts), c_void_p, c_void_p,
                                           POINTER(c_double), POINTER(c_int32)]),
    "sresid_kmeans_explained": (c_int32, _MAT + [c_void_p, c_size_t, POINTER(_KmeansOpts),
                                                 POINTER(_KmeansResult)]),
    "sresid_sparsity": (c_int32, _MAT + [POINTER(_SparsityResult)]),
    "sresid_permutation_null": (c_int32, [c_uint32] + _MAT + [c_double, c_int32, c_uint64,
                                                              POINTER(_NullResult)]),
}


# Every function the binding calls: name -> (restype, argtypes). Handles are
# opaque pointers (c_void_p).
_PROTOTYPES = {
    # common.h
    "sresid_version_string": (c_char_p, []),
    "sresid_version_number": (c_uint32, []),
    "sresid_strerror": (c_char_p, [c_int32]),
    "sresid_last_error": (c_char_p, []),
    "sresid_set_threads": (c_int32, [c_int32]),
    "sresid_get_threads": (c_int32, []),
    "sresid_set_monitor": (None, [c_void_p, c_void_p]),
    "sresid_blas_arch": (c_char_p, []),
    # model.h
    "sresid_dtype_name": (c_char_p, [c_int32]),
    "sresid_dtype_size": (c_size_t, [c_int32]),
    "sresid_dtype_from_name": (c_int32, [c_char_p, POINTER(c_int32)]),
    "sresid_dtype_is_float": (c_int32, [c_int32]),
    "sresid_kind_name": (c_char_p, [c_int32]),
    "sresid_model_open": (c_int32, [c_char_p, POINTER(_ModelOpts), POINTER(c_void_p)]),
    "sresid_model_create": (c_int32, [POINTER(_ModelOpts), POINTER(c_void_p)]),
    "sresid_model_free": (None, [c_void_p]),
    "sresid_model_tensor_count": (c_size_t, [c_void_p]),
    "sresid_model_find": (c_int32, [c_void_p, c_char_p, POINTER(c_size_t)]),
    "sresid_model_tensor_info": (c_int32, [c_void_p, c_size_t, POINTER(_TensorInfo)]),
    "sresid_model_read_f32": (c_int32, [c_void_p, c_size_t, c_void_p, c_size_t]),
    "sresid_model_read_raw": (c_int32, [c_void_p, c_size_t, c_void_p, c_size_t]),
    "sresid_model_add_tensor": (c_int32, [c_void_p, c_char_p, c_int32, c_int32,
                                          POINTER(c_int64), c_void_p, c_size_t, c_uint32]),
    "sresid_model_metadata_count": (c_size_t, [c_void_p]),
    "sresid_model_metadata_at": (c_int32, [c_void_p, c_size_t, POINTER(c_char_p),
                                           POINTER(c_char_p)]),
    "sresid_model_metadata_get": (c_int32, [c_void_p, c_char_p, POINTER(c_char_p)]),
    "sresid_model_set_metadata": (c_int32, [c_void_p, c_char_p, c_char_p]),
    "sresid_model_save": (c_int32, [c_void_p, c_char_p, POINTER(_SaveOpts)]),
    "sresid_model_set_kind_rules": (c_int32, [c_void_p, POINTER(c_char_p), POINTER(c_int32),
                                              c_size_t, c_uint32]),
    "sresid_model_set_layout": (c_int32, [c_void_p, c_int32]),
    "sresid_model_uses_file": (c_int32, [c_void_p, c_char_p, POINTER(c_int32)]),
    "sresid_model_tensor_stack": (c_int32, [c_void_p, c_size_t, POINTER(c_char_p)]),
    # residual.h
    "sresid_residual_create": (c_int32, [c_void_p, c_void_p, POINTER(_PairOpts),
                                         POINTER(c_void_p)]),
    "sresid_residual_free": (None, [c_void_p]),
    "sresid_residual_count": (c_size_t, [c_void_p]),
    "sresid_residual_pair": (c_int32, [c_void_p, c_size_t, POINTER(c_size_t),
                                       POINTER(c_size_t)]),
    "sresid_residual_read": (c_int32, [c_void_p, c_size_t, c_void_p, c_size_t]),
    "sresid_residual_norms": (c_int32, [c_void_p, c_size_t, POINTER(_Norms)]),
    "sresid_residual_unpaired_count": (c_size_t, [c_void_p]),
    "sresid_residual_unpaired": (c_int32, [c_void_p, c_size_t, POINTER(c_char_p),
                                           POINTER(c_int32)]),
}


class _ReportOpts(Structure):
    _fields_ = [("size", c_size_t), ("probes", c_uint32), ("kinds", c_uint32),
                ("flags", c_uint32), ("bins", c_int32), ("band", c_double), ("seed", c_uint64),
                ("ks", POINTER(c_int32)), ("nks", c_size_t), ("null_draws", c_int32),
                ("threads", c_int32), ("progress", c_void_p), ("progress_user", c_void_p),
                ("monitor", c_void_p), ("monitor_user", c_void_p),
                ("kmeans_restarts", c_int32)]


class _TensorReport(Structure):
    _fields_ = [("size", c_size_t), ("name", c_char_p), ("role", c_char_p), ("kind", c_int32),
                ("layer", c_int32), ("ndim", c_int32), ("is_matrix", c_int32),
                ("rows", c_int64), ("cols", c_int64), ("count", c_uint64),
                ("nonfinite", c_uint64)] + [(f, c_double) for f in (
                    "mean", "variance", "skewness", "kurtosis", "entropy_bits",
                    "entropy_random_bits", "pr", "pr_normalized", "lowfreq_ratio")] + [
                ("elements_for_energy", c_double * 3), ("hoyer", c_double),
                ("energy_in_top", c_double * 3)] + [(f, c_double) for f in (
                    "pr_null_mean", "pr_null_std", "pr_null_z", "lowfreq_null_mean",
                    "lowfreq_null_std", "lowfreq_null_z")]


class _GroupReport(Structure):
    _fields_ = [("size", c_size_t), ("group", c_int32), ("reserved", c_int32),
                ("tensors", c_uint64), ("count", c_uint64), ("nonfinite", c_uint64)] + [
                (f, c_double) for f in ("mean", "variance", "skewness", "kurtosis",
                                        "entropy_bits", "entropy_random_bits", "mean_pr")] + [
                ("matrices", c_uint64)]


class _LayerReport(Structure):
    _fields_ = [("size", c_size_t), ("layer", c_int32), ("reserved", c_int32),
                ("tensors", c_uint64), ("count", c_uint64), ("kurtosis", c_double),
                ("entropy_bits", c_double), ("entropy_random_bits", c_double)]


class _CorrelationReport(Structure):
    _fields_ = [("size", c_size_t), ("role", c_char_p), ("layer_a", c_int32),
                ("layer_b", c_int32), ("r", c_double), ("pairs", c_uint64)]


# report.h
_REPORT_PROTOTYPES = {
    "sresid_report_residual": (c_int32, [c_void_p, POINTER(_ReportOpts), POINTER(c_void_p)]),
    "sresid_report_model": (c_int32, [c_void_p, POINTER(_ReportOpts), POINTER(c_void_p)]),
    "sresid_report_free": (None, [c_void_p]),
    "sresid_report_tensor_count": (c_size_t, [c_void_p]),
    "sresid_report_tensor": (c_int32, [c_void_p, c_size_t, POINTER(_TensorReport)]),
    "sresid_report_tensor_kmeans": (c_int32, [c_void_p, c_size_t, c_size_t,
                                              POINTER(_KmeansResult)]),
    "sresid_report_group": (c_int32, [c_void_p, c_int32, POINTER(_GroupReport)]),
    "sresid_report_layer_count": (c_size_t, [c_void_p]),
    "sresid_report_layer": (c_int32, [c_void_p, c_size_t, POINTER(_LayerReport)]),
    "sresid_report_pair_count": (c_size_t, [c_void_p]),
    "sresid_report_pair": (c_int32, [c_void_p, c_size_t, POINTER(_CorrelationReport)]),
    "sresid_report_layer_correlation_count": (c_size_t, [c_void_p]),
    "sresid_report_layer_correlation": (c_int32, [c_void_p, c_size_t,
                                                  POINTER(_CorrelationReport)]),
    "sresid_report_tensor_stack": (c_int32, [c_void_p, c_size_t, POINTER(c_char_p)]),
    "sresid_report_layer_stack": (c_int32, [c_void_p, c_size_t, POINTER(c_char_p)]),
    "sresid_report_pair_stack": (c_int32, [c_void_p, c_size_t, POINTER(c_char_p)]),
    "sresid_report_layer_correlation_stack": (c_int32, [c_void_p, c_size_t,
                                                        POINTER(c_char_p)]),
    "sresid_report_json": (c_int32, [c_void_p, c_uint32, POINTER(c_void_p)]),
    "sresid_report_save_json": (c_int32, [c_void_p, c_uint32, c_char_p]),
    "sresid_free": (None, [c_void_p]),
}
# ---- structs and prototypes of mask.h and optim.h ----
class _OptimOpts(Structure):
    _fields_ = [("size", c_size_t), ("kind", c_int32), ("flags", c_uint32), ("lr", c_double),
                ("beta1", c_double), ("beta2", c_double), ("eps", c_double),
                ("weight_decay", c_double), ("momentum", c_double)]


_SEGS = [c_void_p, c_size_t]  # const uint64_t *offsets, size_t nseg
_MASK_PROTOTYPES = {
    # mask.h
    "sresid_mask_create": (c_int32, [c_uint64, c_int32, POINTER(c_void_p)]),
    "sresid_mask_copy": (c_int32, [c_void_p, POINTER(c_void_p)]),
    "sresid_mask_free": (None, [c_void_p]),
    "sresid_mask_size": (c_uint64, [c_void_p]),
    "sresid_mask_count": (c_uint64, [c_void_p]),
    "sresid_mask_count_range": (c_int32, [c_void_p, c_uint64, c_uint64, POINTER(c_uint64)]),
    "sresid_mask_get": (c_int32, [c_void_p, c_uint64, POINTER(c_int32)]),
    "sresid_mask_set": (c_int32, [c_void_p, c_uint64, c_int32]),
    "sresid_mask_combine": (c_int32, [c_void_p, c_void_p, c_int32]),
    "sresid_mask_not": (c_int32, [c_void_p]),
    "sresid_mask_jaccard": (c_int32, [c_void_p, c_void_p, POINTER(c_double)]),
    "sresid_mask_from_bytes": (c_int32, [c_void_p, c_uint64, POINTER(c_void_p)]),
    "sresid_mask_to_bytes": (c_int32, [c_void_p, c_void_p, c_uint64]),
    "sresid_mask_apply": (c_int32, [c_void_p, c_void_p, c_uint64]),
    "sresid_mask_top": (c_int32, [c_void_p, c_uint64, c_double] + _SEGS + [POINTER(c_void_p)]),
    "sresid_mask_random": (c_int32, [c_uint64, c_double, c_uint64] + _SEGS
                           + [POINTER(c_void_p)]),
    "sresid_mask_drop_grow": (c_int32, [c_void_p, c_void_p, c_void_p, c_uint64, c_double]
                              + _SEGS + [c_void_p]),
    "sresid_mask_save": (c_int32, [c_void_p, c_char_p, POINTER(_SaveOpts)]),
    "sresid_mask_load": (c_int32, [c_char_p, POINTER(c_void_p)]),
    # optim.h
    "sresid_optim_create": (c_int32, [c_uint64, POINTER(_OptimOpts), POINTER(c_void_p)]),
    "sresid_optim_free": (None, [c_void_p]),
    "sresid_optim_size": (c_uint64, [c_void_p]),
    "sresid_optim_steps": (c_uint64, [c_void_p]),
    "sresid_optim_get_opts": (c_int32, [c_void_p, POINTER(_OptimOpts)]),
    "sresid_optim_set_lr": (c_int32, [c_void_p, c_double]),
    "sresid_optim_step": (c_int32, [c_void_p, c_void_p, c_void_p, c_uint64, c_void_p]),
    "sresid_optim_reset": (c_int32, [c_void_p, c_void_p]),
    "sresid_optim_state": (c_int32, [c_void_p, POINTER(c_void_p), POINTER(c_void_p)]),
    "sresid_optim_save": (c_int32, [c_void_p, c_char_p, POINTER(_SaveOpts)]),
    "sresid_optim_load": (c_int32, [c_char_p, POINTER(c_void_p)]),
}

# ---- structs and prototypes of amp.h ----
class _AmpOpts(Structure):
    _fields_ = [("size", c_size_t), ("layout", c_int32), ("rank", c_int32), ("kinds", c_uint32),
                ("threads", c_int32), ("pattern", c_char_p), ("min_dim", c_int64)]


class _AmpTensorInfo(Structure):
    _fields_ = [("size", c_size_t), ("name", c_char_p), ("index", c_size_t), ("rows", c_int64),
                ("cols", c_int64), ("rank", c_int64), ("offset", c_uint64), ("count", c_uint64)]


class _SelectOpts(Structure):
    _fields_ = [("size", c_size_t), ("flags", c_uint32), ("seed", c_uint64),
                ("saliency", c_void_p)]


_AMP_PROTOTYPES = {
    "sresid_amp_create": (c_int32, [c_void_p, POINTER(_AmpOpts), POINTER(c_void_p)]),
    "sresid_amp_free": (None, [c_void_p]),
    "sresid_amp_count": (c_size_t, [c_void_p]),
    "sresid_amp_score_count": (c_uint64, [c_void_p]),
    "sresid_amp_layout": (c_int32, [c_void_p]),
    "sresid_amp_tensor": (c_int32, [c_void_p, c_size_t, POINTER(_AmpTensorInfo)]),
    "sresid_amp_scores": (c_void_p, [c_void_p]),
    "sresid_amp_initial_scores": (c_void_p, [c_void_p]),
    "sresid_amp_offsets": (c_void_p, [c_void_p]),
    "sresid_amp_basis": (c_int32, [c_void_p, c_size_t, POINTER(c_void_p), POINTER(c_void_p)]),
    "sresid_amp_reset": (c_int32, [c_void_p]),
    "sresid_amp_materialize": (c_int32, [c_void_p, c_size_t, c_void_p, c_int64, c_uint32]),
    "sresid_amp_project": (c_int32, [c_void_p, c_size_t, c_void_p, c_int64, c_void_p, c_void_p,
                                     c_uint32]),
    "sresid_amp_select": (c_int32, [c_void_p, c_int32, c_double, POINTER(_SelectOpts),
                                    POINTER(c_void_p)]),
    "sresid_amp_drop_grow": (c_int32, [c_void_p, c_void_p, c_double, c_void_p, c_uint32,
                                       c_void_p]),
    "sresid_amp_fit": (c_int32, [c_void_p, c_void_p, c_void_p]),
    "sresid_amp_share": (c_int32, [c_void_p, c_void_p, c_void_p, c_size_t, c_uint32, c_void_p,
                                   c_void_p, c_void_p, c_void_p]),
    "sresid_amp_export": (c_int32, [c_void_p, POINTER(c_void_p)]),
    "sresid_amp_save": (c_int32, [c_void_p, c_void_p, c_char_p, POINTER(_SaveOpts)]),
    "sresid_amp_load": (c_int32, [c_void_p, c_char_p, POINTER(c_void_p), POINTER(c_void_p)]),
}

# ---- structs and prototypes of the sparse residuals (residual.h) ----
class _SparseOpts(Structure):
    _fields_ = [("size", c_size_t), ("rule", c_int32), ("dtype", c_int32), ("param", c_double),
                ("seed", c_uint64), ("threads", c_int32), ("flags", c_uint32)]


class _SparseInfo(Structure):
    _fields_ = [("size", c_size_t), ("name", c_char_p), ("shape", POINTER(c_int64)),
                ("ndim", c_int32), ("base_dtype", c_int32), ("index_dtype", c_int32),
                ("value_dtype", c_int32), ("numel", c_int64), ("kept", c_uint64),
                ("bytes", c_uint64), ("dense_bytes", c_uint64), ("ratio", c_double),
                ("energy", c_double), ("kept_energy", c_double), ("error", c_double)]


class _ApplyOpts(Structure):
    _fields_ = [("size", c_size_t), ("scale", c_double), ("flags", c_uint32)]


_SPARSE_PROTOTYPES = {
    "sresid_sparse_create": (c_int32, [c_void_p, POINTER(_SparseOpts), POINTER(c_void_p)]),
    "sresid_sparse_free": (None, [c_void_p]),
    "sresid_sparse_count": (c_size_t, [c_void_p]),
    "sresid_sparse_info_get": (c_int32, [c_void_p, c_size_t, POINTER(_SparseInfo)]),
    "sresid_sparse_entries": (c_int32, [c_void_p, c_size_t, c_void_p, c_void_p, c_uint64]),
    "sresid_sparse_save": (c_int32, [c_void_p, c_char_p, POINTER(_SaveOpts)]),
    "sresid_sparse_load": (c_int32, [c_char_p, POINTER(c_void_p)]),
    "sresid_sparse_apply": (c_int32, [c_void_p, c_void_p, POINTER(_ApplyOpts), c_char_p]),
}

_PROBE_PROTOTYPES.update(_REPORT_PROTOTYPES)
_PROTOTYPES.update(_PROBE_PROTOTYPES)
_PROTOTYPES.update(_MASK_PROTOTYPES)
_PROTOTYPES.update(_AMP_PROTOTYPES)
_PROTOTYPES.update(_SPARSE_PROTOTYPES)


def _find_library():
    env = os.environ.get("SPARSERESID_LIB")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    soname = "libsparseresid.so.%d" % VERSION_MAJOR
    local = os.path.normpath(os.path.join(here, os.pardir, "lib", soname))
    if os.path.exists(local):
        return local
    return soname


def _load():
    path = _find_library()
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise ImportError(
            "sparseresid: cannot load %s (%s); build it with `make lib` or set "
            "SPARSERESID_LIB to the library's path" % (path, exc)) from exc
    for name, (restype, argtypes) in _PROTOTYPES.items():
        fn = getattr(lib, name, None)
        if fn is None:
            raise ImportError("sparseresid: %s lacks %s; rebuild it with `make lib`"
                              % (path, name))
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


_lib = _load()
# Initialise BLIS now (sresid_blas_arch runs bli_init). BLIS 0.9 aborts the
# process when BLIS_ARCH_TYPE is set and bli_arch_query_id() is called before
# bli_init(), which is what threadpoolctl does on every BLIS it finds loaded,
# and scikit-learn calls threadpoolctl inside KMeans.fit and elsewhere.
_lib.sresid_blas_arch()
#: Path the shared library was loaded from (as given to the loader).
library_path = _lib._name


def _str(b):
    return None if b is None else b.decode("utf-8")


def _bytes(s, what):
    if isinstance(s, bytes):
        return s
    if isinstance(s, str):
        return s.encode("utf-8")
    if isinstance(s, os.PathLike):
        return os.fsencode(s)
    raise TypeError("%s must be str, not %s" % (what, type(s).__name__))


class SparseResidError(Exception):
    """A libsparseresid call failed.

    status:   the SRESID_ERR_* code (see the ERR_* constants)
    message:  the library's detail (sresid_last_error()), or its strerror text
    strerror: the library's short text for status
    """

    def __init__(self, status, message=None):
        self.status = int(status)
        self.strerror = strerror(status)
        self.message = message if message else self.strerror
        super().__init__(self.message)

    def __str__(self):
        return "%s [status %d: %s]" % (self.message, self.status, self.strerror)


def _check(status):
    if status != OK:
        # Fetch the thread-local detail before any other library call.
        raise SparseResidError(status, _str(_lib.sresid_last_error()))


# ---- following long calls: progress and stopping ----
_MONITOR_FN = CFUNCTYPE(c_int, c_void_p, c_uint64, c_uint64, c_char_p)
_check_signals = ctypes.pythonapi.PyErr_CheckSignals
_check_signals.restype = c_int
_check_signals.argtypes = []


class _Monitored:
    """Follows one long library call on this thread (sresid_set_monitor).

    The library calls back after each unit of work and, between units, about
    every 100 ms. On the main thread, SIGINT's Python handler is wrapped for
    the call: what it raises (KeyboardInterrupt for Ctrl-C) is kept instead
    of escaping from a callback, and the next callback asks the library to
    stop (SRESID_ERR_CANCELLED, nothing half done). An exception progress
    raises stops the call the same way. Either is raised again once the call
    has returned."""

    def __init__(self, progress):
        if progress is not None and not callable(progress):
            raise TypeError("progress must be callable(done, total, name), not %s"
                            % type(progress).__name__)
        self._progress = progress
        self._error = None
        self._fn = _MONITOR_FN(self._call)
        self._prev = None

    def _on_sigint(self, signum, frame):
        try:
            self._prev(signum, frame)
        except BaseException as exc:  # KeyboardInterrupt: kept, the call stops
            if self._error is None:
                self._error = exc

    def _call(self, user, done, total, name):
        try:
            _check_signals()  # runs _on_sigint now if a signal is pending
            if self._error is None and name is not None and self._progress is not None:
                self._progress(int(done), int(total), name.decode("utf-8", "replace"))
        except BaseException as exc:
            if self._error is None:
                self._error = exc
        return 1 if self._error is not None else 0

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            prev = signal.getsignal(signal.SIGINT)
            if callable(prev):
                self._prev = prev
                signal.signal(signal.SIGINT, self._on_sigint)
        _lib.sresid_set_monitor(ctypes.cast(self._fn, c_void_p), None)
        return self

    def __exit__(self, *exc):
        _lib.sresid_set_monitor(None, None)
        if self._prev is not None:
            signal.signal(signal.SIGINT, self._prev)
            self._prev = None

    def check(self, status):
        """_check, but a stop asked by the callback raises what stopped it."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        _check(status)


def _monitored(progress, fn, *args):
    """Call fn(*args) under a monitor; raise as _Monitored.check does."""
    with _Monitored(progress) as m:
        status = fn(*args)
    m.check(status)


# ---- library-wide functions ----
def version():
    """Version string of the library actually loaded, e.g. "1.0.0"."""
    return _str(_lib.sresid_version_string())


def version_number():
    """major * 10000 + minor * 100 + patch of the library actually loaded."""
    return int(_lib.sresid_version_number())


def strerror(status):
    """Short English text for a status code."""
    return _str(_lib.sresid_strerror(int(status)))


def last_error():
    """Detail of the last failure on this thread ("" if none)."""
    return _str(_lib.sresid_last_error())


def set_threads(n):
    """Thread count for the library's parallel work; 0 restores the default."""
    _check(_lib.sresid_set_threads(int(n)))


def get_threads():
    """Effective thread count (>= 1)."""
    return int(_lib.sresid_get_threads())


def blas_arch():
    """Name of the BLIS kernel set in use ("skx", "zen3", "generic", ...)."""
    return _str(_lib.sresid_blas_arch())


def dtype_name(dtype):
    """Safetensors name of a DTYPE_* code, or None."""
    return _str(_lib.sresid_dtype_name(int(dtype)))


def dtype_size(dtype):
    """Bytes per element of a DTYPE_* code (0 if unknown)."""
    return int(_lib.sresid_dtype_size(int(dtype)))


def dtype_from_name(name):
    """DTYPE_* code of a safetensors dtype name ("F32", "BF16", ...)."""
    out = c_int32(0)
    _check(_lib.sresid_dtype_from_name(_bytes(name, "dtype name"), byref(out)))
    return out.value


def dtype_is_float(dtype):
    """True if tensors of this dtype can be read as float32."""
    return bool(_lib.sresid_dtype_is_float(int(dtype)))


def kind_name(kind):
    """Name of a KIND_* code ("attention", "mlp", ...), or None."""
    return _str(_lib.sresid_kind_name(int(kind)))


def _layout_code(layout):
    if isinstance(layout, str):
        try:
            return _LAYOUTS[layout]
        except KeyError:
            raise ValueError("layout must be one of %s" % ", ".join(_LAYOUTS)) from None
    return int(layout)


def _model_opts(layout, flags=0):
    return _ModelOpts(size=ctypes.sizeof(_ModelOpts), layout=_layout_code(layout), flags=flags)


class _Owner:
    """The library allocation behind arrays that view it: freed when the last
    reference goes, so a numpy view (whose base holds one) never outlives the
    memory it sees, whatever is closed, deleted or collected first."""

    __slots__ = ("ptr", "free")

    def __init__(self, ptr, free):
        self.ptr, self.free = ptr, free

    def __del__(self):
        ptr, self.ptr = self.ptr, None
        if ptr:
            try:
                self.free(c_void_p(ptr))
            except Exception:  # interpreter shutdown
                pass


def _view_of(owner, ptr, ctype, dtype, shape, writeable):
    """A numpy array over n = prod(shape) elements at ptr, keeping owner alive
    (its ctypes buffer, the array's base, holds it)."""
    n = int(np.prod(shape)) if len(shape) else 1
    if not ptr or n == 0:
        return np.zeros(shape, dtype=dtype)
    buf = (ctype * n).from_address(ptr)
    buf._owner = owner
    arr = np.frombuffer(buf, dtype=dtype).reshape(shape)
    if not writeable:
        arr.flags.writeable = False
    return arr


class _Handle:
    """A library handle in self._h, released by close(): context manager,
    released when garbage-collected, and refused once closed."""

    _h = None
    _what = "handle"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def _handle(self):
        if self._h is None:
            raise ValueError("%s is closed" % self._what)
        return self._h


class Model(_Handle):
    """A checkpoint: an ordered set of named tensors plus string metadata.

    Get one with Model.open(path) or Model.create(); release it with close()
    or a with-block (residuals built on it are closed first).
    """

    _what = "model"

    def __init__(self, handle):
        if not handle:
            raise ValueError("use Model.open() or Model.create()")
        self._h = c_void_p(handle)
        self._residuals = weakref.WeakSet()  # residuals borrowing this model

    @classmethod
    def open(cls, path, layout="out-first", keep_pages=False):
        """Open a .safetensors file, a *.safetensors.index.json or a directory."""
        out = c_void_p()
        opts = _model_opts(layout, OPEN_KEEP_PAGES if keep_pages else 0)
        _check(_lib.sresid_model_open(_bytes(path, "path"), byref(opts), byref(out)))
        return cls(out.value)

    @classmethod
    def create(cls, layout="out-first"):
        """An empty in-memory model."""
        out = c_void_p()
        opts = _model_opts(layout)
        _check(_lib.sresid_model_create(byref(opts), byref(out)))
        return cls(out.value)

    # -- lifetime --
    def close(self):
        """Free the model (and first any Residual built on it). Idempotent."""
        for res in list(self._residuals):
            res.close()
        if getattr(self, "_h", None) is not None and self._h.value:
            _lib.sresid_model_free(self._h)
        self._h = None

    @property
    def closed(self):
        return self._h is None

    # -- tensors --
    def __len__(self):
        return int(_lib.sresid_model_tensor_count(self._handle()))

    def __contains__(self, name):
        try:
            self.index(name)
        except SparseResidError as exc:
            if exc.status == ERR_NOT_FOUND:
                return False
            raise
        return True

    def __iter__(self):
        return iter(self.names())

    def index(self, key):
        """Tensor index of a name (or an int, checked and made non-negative)."""
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            n = len(self)
            i = int(key)
            if i < 0:
                i += n
            if not 0 <= i < n:
                raise IndexError("tensor index %d out of range (model has %d)" % (int(key), n))
            return i
        out = c_size_t(0)
        _check(_lib.sresid_model_find(self._handle(), _bytes(key, "tensor name"), byref(out)))
        return out.value

    def _info(self, key):
        info = _TensorInfo()
        info.size = ctypes.sizeof(_TensorInfo)
        _check(_lib.sresid_model_tensor_info(self._handle(), self.index(key), byref(info)))
        return info

    def names(self):
        """Tensor names in model order."""
        return [_str(self._info(i).name) for i in range(len(self))]

    def info(self, key):
        """Facts about one tensor (by index or name) as a dict."""
        idx = self.index(key)
        t = self._info(idx)
        shape = tuple(int(t.shape[d]) for d in range(t.ndim)) if t.ndim else ()
        stack = c_char_p()
        _check(_lib.sresid_model_tensor_stack(self._handle(), idx, byref(stack)))
        return {
            "name": _str(t.name),
            "role": _str(t.role),
            "stack": _str(stack.value),
            "dtype": dtype_name(t.dtype),
            "shape": shape,
            "numel": int(t.numel),
            "nbytes": int(t.nbytes),
            "rows": int(t.rows),
            "cols": int(t.cols),
            "kind": kind_name(t.kind),
            "layer": int(t.layer),
        }

    def read(self, key, out=None):
        """A float tensor as a float32 array of its shape.

        The library converts straight into the array's memory; pass out (a
        writeable C-contiguous float32 array with at least numel elements) to
        reuse a buffer."""
        idx = self.index(key)
        t = self._info(idx)
        shape = tuple(int(t.shape[d]) for d in range(t.ndim)) if t.ndim else ()
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        else:
            _check_out(out, np.float32, int(t.numel))
        _check(_lib.sresid_model_read_f32(self._handle(), idx, out.ctypes.data_as(c_void_p),
                                          out.size))
        return out

    def read_raw(self, key):
        """A tensor's stored values, any dtype, as an array of its shape.

        BF16 comes back as uint16 and F8 as uint8 (the raw bit patterns)."""
        idx = self.index(key)
        t = self._info(idx)
        shape = tuple(int(t.shape[d]) for d in range(t.ndim)) if t.ndim else ()
        out = np.empty(shape, dtype=np.dtype(_TO_NUMPY[t.dtype]))
        _check(_lib.sresid_model_read_raw(self._handle(), idx, out.ctypes.data_as(c_void_p),
                                          out.nbytes))
        return out

    def add(self, name, array, dtype=None):
        """Append a tensor; its data is copied.

        The safetensors dtype follows the numpy dtype (bool, int8..uint64,
        float16/32/64). For types numpy lacks pass dtype explicitly with an
        array of the same item size holding the bit patterns, e.g. a uint16
        array with dtype="BF16" or a uint8 array with dtype="F8_E4M3"."""
        arr = np.asarray(array)
        if dtype is None:
            try:
                code = _FROM_NUMPY[arr.dtype.newbyteorder("=")]
            except KeyError:
                raise TypeError("no safetensors dtype for numpy %s; pass dtype=" % arr.dtype) \
                    from None
        else:
            code = dtype_from_name(dtype) if isinstance(dtype, (str, bytes)) else int(dtype)
            size = dtype_size(code)
            if size == 0:
                raise SparseResidError(ERR_DTYPE, "unknown dtype %r" % (dtype,))
            if arr.dtype.itemsize != size:
                raise TypeError("dtype %s needs %d-byte items, got numpy %s"
                                % (dtype_name(code), size, arr.dtype))
        little = arr.dtype.newbyteorder("<")  # safetensors data is little-endian
        if arr.dtype != little:
            arr = arr.astype(little)
        if not arr.flags.c_contiguous:
            arr = np.array(arr, order="C")  # (np.ascontiguousarray would make rank 0 rank 1)
        ndim = arr.ndim
        shape = (c_int64 * ndim)(*arr.shape) if ndim else None
        data = arr.ctypes.data_as(c_void_p) if arr.nbytes else None
        _check(_lib.sresid_model_add_tensor(self._handle(), _bytes(name, "tensor name"), code,
                                            ndim, shape, data, arr.nbytes, 0))

    # -- metadata --
    @property
    def metadata(self):
        """The safetensors __metadata__ map, in order, as a new dict."""
        h = self._handle()
        result = {}
        for i in range(int(_lib.sresid_model_metadata_count(h))):
            k, v = c_char_p(), c_char_p()
            _check(_lib.sresid_model_metadata_at(h, i, byref(k), byref(v)))
            result[_str(k.value)] = _str(v.value)
        return result

    def get_metadata(self, key, default=None):
        v = c_char_p()
        status = _lib.sresid_model_metadata_get(self._handle(), _bytes(key, "key"), byref(v))
        if status == ERR_NOT_FOUND:
            return default
        _check(status)
        return _str(v.value)

    def set_metadata(self, key, value):
        """Set key to value; value None removes the key."""
        _check(_lib.sresid_model_set_metadata(self._handle(), _bytes(key, "key"),
                                              None if value is None else _bytes(value, "value")))

    # -- saving and labels --
    def save(self, path, no_clobber=False, progress=None):
        """Save as one safetensors file (reference layout, atomic rename).
        progress: callable(done, total, name) after each tensor written;
        Ctrl-C stops the call (docs/python.md, "Progress and Ctrl-C")."""
        opts = _SaveOpts(size=ctypes.sizeof(_SaveOpts),
                         flags=SAVE_NO_CLOBBER if no_clobber else 0)
        _monitored(progress, _lib.sresid_model_save, self._handle(), _bytes(path, "path"),
                   byref(opts))

    def set_kind_rules(self, rules, replace=False):
        """Relabel kinds: rules is a list of (glob pattern, kind name or KIND_*)."""
        rules = list(rules)
        n = len(rules)
        pats = (c_char_p * max(n, 1))(*[_bytes(p, "pattern") for p, _ in rules])
        kinds = (c_int32 * max(n, 1))(*[_KINDS[k] if isinstance(k, str) else int(k)
                                        for _, k in rules])
        _check(_lib.sresid_model_set_kind_rules(self._handle(), pats, kinds, n,
                                                RULES_REPLACE if replace else 0))

    def set_layout(self, layout):
        """Matrix view of rank >= 3 tensors: "out-first" or "out-last"."""
        _check(_lib.sresid_model_set_layout(self._handle(), _layout_code(layout)))

    def uses_file(self, path):
        """True when path is one of the files this model reads (the same
        file through symlinks, "./" and hard links): an output there would
        replace an input."""
        out = c_int32(0)
        _check(_lib.sresid_model_uses_file(self._handle(), _bytes(path, "path"), byref(out)))
        return bool(out.value)

    def __repr__(self):
        if self._h is None:
            return "<sparseresid.Model closed>"
        return "<sparseresid.Model %d tensors>" % len(self)


def _check_out(out, dtype, count):
    if not isinstance(out, np.ndarray) or out.dtype != np.dtype(dtype):
        raise TypeError("out must be a numpy %s array" % np.dtype(dtype).name)
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be C-contiguous and writeable")
    if out.size < count:
        raise ValueError("out holds %d elements, need %d" % (out.size, count))


class Residual(_Handle):
    """trained - base, paired by tensor name, computed lazily per tensor.

    Both models must stay open while the residual lives (closing one closes
    the residual first)."""

    _what = "residual"

    def __init__(self, base, trained, skip_mismatched=False):
        if not isinstance(base, Model) or not isinstance(trained, Model):
            raise TypeError("base and trained must be Model objects")
        self._h = None
        opts = _PairOpts(size=ctypes.sizeof(_PairOpts),
                         flags=PAIR_SKIP_MISMATCHED if skip_mismatched else 0)
        out = c_void_p()
        _check(_lib.sresid_residual_create(base._handle(), trained._handle(), byref(opts),
                                           byref(out)))
        self._h = out
        self.base = base
        self.trained = trained
        base._residuals.add(self)
        trained._residuals.add(self)

    def close(self):
        """Free the residual (not its models). Idempotent."""
        if getattr(self, "_h", None) is not None:
            _lib.sresid_residual_free(self._h)
            self._h = None
            for m in (self.base, self.trained):
                m._residuals.discard(self)

    def __len__(self):
        return int(_lib.sresid_residual_count(self._handle()))

    def _index(self, i):
        n = len(self)
        j = int(i)
        if j < 0:
            j += n
        if not 0 <= j < n:
            raise IndexError("pair index %d out of range (%d pairs)" % (int(i), n))
        return j

    def pair(self, i):
        """(base tensor index, trained tensor index) of pair i."""
        b, t = c_size_t(0), c_size_t(0)
        _check(_lib.sresid_residual_pair(self._handle(), self._index(i), byref(b), byref(t)))
        return b.value, t.value

    def name(self, i):
        """Tensor name of pair i."""
        return self.base.info(self.pair(i)[0])["name"]

    def names(self):
        return [self.name(i) for i in range(len(self))]

    def read(self, i, out=None):
        """Residual of pair i as a float32 array of the tensor's shape."""
        j = self._index(i)
        info = self.base.info(self.pair(j)[0])
        if out is None:
            out = np.empty(info["shape"], dtype=np.float32)
        else:
            _check_out(out, np.float32, info["numel"])
        _check(_lib.sresid_residual_read(self._handle(), j, out.ctypes.data_as(c_void_p),
                                         out.size))
        return out

    def norms(self, i=None):
        """Frobenius norms of pair i, or of all pairs together when i is None:
        dict(base, trained, residual, relative)."""
        j = ALL if i is None else self._index(i)
        out = _Norms()
        out.size = ctypes.sizeof(_Norms)
        _check(_lib.sresid_residual_norms(self._handle(), j, byref(out)))
        return {"base": out.base, "trained": out.trained, "residual": out.residual,
                "relative": out.relative}

    def unpaired(self):
        """Tensors left out of the pairing: list of (name, reason), reason one
        of "base-only", "trained-only", "shape", "not-float"."""
        h = self._handle()
        result = []
        for i in range(int(_lib.sresid_residual_unpaired_count(h))):
            name, reason = c_char_p(), c_int32(0)
            _check(_lib.sresid_residual_unpaired(h, i, byref(name), byref(reason)))
            result.append((_str(name.value),
                           _UNPAIRED_REASONS.get(reason.value, str(reason.value))))
        return result

    def __repr__(self):
        if self._h is None:
            return "<sparseresid.Residual closed>"
        return "<sparseresid.Residual %d pairs>" % len(self)


# ==== probes (probe.h): statistics of a residual or of any float32 matrix ====
#
# Arrays go to the library without a copy: pass numpy float32 arrays, either
# 1-D and contiguous (one row) or 2-D with unit column stride (a C-contiguous
# matrix or a row-strided view such as a[:, :k] or a[::2]; the row stride goes
# to the library as ld). Anything else raises TypeError (dtype) or ValueError
# (shape, strides) rather than being copied behind the caller's back.

# probe.h: probe identifiers (also the bits of the report's probe set)
PROBE_MOMENTS = 0x01
PROBE_ENTROPY = 0x02
PROBE_PR = 0x04
PROBE_LOWFREQ = 0x08
PROBE_KMEANS = 0x10
PROBE_SPARSITY = 0x20
PROBE_CORRELATION = 0x40
PROBE_ALL = 0x7F

#: Energy levels of sparsity()["elements_for_energy"] and element shares of
#: sparsity()["energy_in_top"], in order.
SPARSITY_ENERGY_LEVELS = (0.50, 0.90, 0.99)
SPARSITY_TOP_SHARES = (0.01, 0.10, 0.50)
#: Default K values of kmeans_explained.
KMEANS_DEFAULT_KS = (2, 4, 8, 16)
#: n_init of kmeans_fit / kmeans_explained: the bound, and the value (also
#: n_init="auto") that picks the runs from the matrix's size, as the report
#: does by default: min(50, max(1, 2**24 // (rows * cols))).
KMEANS_MAX_INIT = 1000
KMEANS_INIT_AUTO = -1

_PROBE_NAMES = {"pr": PROBE_PR, "participation_ratio": PROBE_PR, "lowfreq": PROBE_LOWFREQ,
                "kmeans": PROBE_KMEANS}


def has_function(name):
    """True if the loaded library exports the function name (e.g.
    "sresid_kmeans_fit"). Every function of this binding is there: the
    import fails otherwise."""
    return hasattr(_lib, name)


class _Mat:
    """A float32 array checked for a zero-copy call: ptr, rows, cols, ld.
    Holds a reference to the array for as long as the call needs it."""

    __slots__ = ("array", "ptr", "rows", "cols", "ld")

    def __init__(self, a, what="a", flat=False):
        arr = np.asarray(a)
        if arr.dtype != np.float32:  # also rejects byte-swapped float32
            raise TypeError("%s must be a native float32 array, not %s (convert it with "
                            ".astype(np.float32))" % (what, arr.dtype))
        if flat and arr.ndim >= 1 and arr.flags.c_contiguous:
            # statistics of the values only: any C-contiguous array is one row
            rows, cols, ld = (1, arr.size, max(arr.size, 1))
        elif arr.ndim == 1:
            if not arr.flags.c_contiguous:
                raise ValueError("%s: a 1-D array must be contiguous (got stride %d bytes)"
                                 % (what, arr.strides[0]))
            rows, cols, ld = 1, arr.shape[0], max(arr.shape[0], 1)
        elif arr.ndim == 2:
            rows, cols = arr.shape
            s0, s1 = arr.strides
            if cols > 1 and s1 != 4:
                raise ValueError("%s: the column stride must be one element (got %d bytes); "
                                 "pass a row-major view or np.ascontiguousarray(%s)"
                                 % (what, s1, what))
            if rows <= 1:
                ld = max(cols, 1)
            elif s0 % 4 or s0 < 4 * cols:
                raise ValueError("%s: row stride %d bytes is not a positive multiple of 4 "
                                 "bytes of at least cols elements" % (what, s0))
            else:
                ld = s0 // 4
        else:
            raise ValueError("%s must be 1-D or 2-D, not %d-D" % (what, arr.ndim))
        if arr.size and arr.ctypes.data % 4:
            raise ValueError("%s: data is not aligned to 4 bytes" % what)
        self.array = arr
        self.ptr = arr.ctypes.data if arr.size else None
        self.rows, self.cols, self.ld = int(rows), int(cols), int(ld)

    def args(self):
        return (self.ptr, self.rows, self.cols, self.ld)


def _sized(cls):
    s = cls()
    s.size = ctypes.sizeof(cls)
    return s


def _moment_stats_dict(st):
    return {"count": int(st.count), "nonfinite": int(st.nonfinite), "mean": st.mean,
            "variance": st.variance, "skewness": st.skewness, "kurtosis": st.kurtosis,
            "min": st.min, "max": st.max}


class Moments:
    """Mergeable running moments (sresid_moments): mean, population variance,
    skewness and excess kurtosis as scipy.stats.skew / kurtosis with their
    defaults; min and max; non-finite values are counted and skipped.

        m = Moments().add(chunk1).add(chunk2)
        m.merge(other_moments)   # exactly the state of the concatenation
        m.stats()["kurtosis"]

    Plain data: copy() and pickling work."""

    def __init__(self, data=None):
        self._s = _Moments()
        _check(_lib.sresid_moments_init(byref(self._s)))
        if data is not None:
            self.add(data)

    def add(self, x):
        """Add the values of a float32 array (any C-contiguous array, or a
        2-D row-strided view). Returns self."""
        m = _Mat(x, "x", flat=True)
        _check(_lib.sresid_moments_add(byref(self._s), *m.args()))
        return self

    def merge(self, other):
        """self := self + other. Returns self."""
        if not isinstance(other, Moments):
            raise TypeError("other must be a Moments object")
        _check(_lib.sresid_moments_merge(byref(self._s), byref(other._s)))
        return self

    def stats(self):
        """dict(count, nonfinite, mean, variance, skewness, kurtosis, min, max);
        NaN where undefined (e.g. the kurtosis of a constant)."""
        out = _sized(_MomentStats)
        _check(_lib.sresid_moments_stats(byref(self._s), byref(out)))
        return _moment_stats_dict(out)

    def state(self):
        """The raw state as a dict (count, nonfinite, mean, m2, m3, m4, min, max)."""
        return {name: getattr(self._s, name) for name, _ in _Moments._fields_ if name != "size"}

    @property
    def count(self):
        return int(self._s.count)

    def copy(self):
        new = Moments.__new__(Moments)
        new._s = _Moments.from_buffer_copy(self._s)
        return new

    __copy__ = copy

    def __getstate__(self):
        return bytes(self._s)

    def __setstate__(self, raw):
        self._s = _Moments.from_buffer_copy(raw)

    def __repr__(self):
        return "<sparseresid.Moments count=%d mean=%g>" % (self._s.count, self._s.mean)


class Histogram(_Handle):
    """bins equal bins over [lo, hi], as numpy.histogram(x.astype(np.float64),
    bins, range=(lo, hi)): the last bin is closed; finite values outside
    [lo, hi] are counted apart (outside()). Use as a context manager or
    close() it; it is freed on garbage collection too."""

    _what = "histogram"

    def __init__(self, bins, lo, hi):
        self._h = None
        out = c_void_p()
        _check(_lib.sresid_histogram_create(int(bins), float(lo), float(hi), byref(out)))
        self._h = out
        self.bins, self.lo, self.hi = int(bins), float(lo), float(hi)

    def close(self):
        """Free the histogram. Idempotent."""
        if getattr(self, "_h", None) is not None:
            _lib.sresid_histogram_free(self._h)
            self._h = None

    def add(self, x):
        """Count the finite values of a float32 array. Returns self."""
        m = _Mat(x, "x", flat=True)
        _check(_lib.sresid_histogram_add(self._handle(), *m.args()))
        return self

    def merge(self, other):
        """self += other (same bins, lo, hi). Returns self."""
        if not isinstance(other, Histogram):
            raise TypeError("other must be a Histogram")
        _check(_lib.sresid_histogram_merge(self._handle(), other._handle()))
        return self

    def counts(self):
        """Bin counts as a new numpy uint64 array of bins entries."""
        out = np.zeros(self.bins, dtype=np.uint64)
        _check(_lib.sresid_histogram_counts(self._handle(), out.ctypes.data, out.size))
        return out

    def outside(self):
        """Finite values seen outside [lo, hi]."""
        return int(_lib.sresid_histogram_outside(self._handle()))

    def entropy(self):
        """Shannon entropy in bits of the counts (NaN when empty)."""
        out = c_double()
        _check(_lib.sresid_histogram_entropy(self._handle(), byref(out)))
        return out.value

    def __repr__(self):
        if self._h is None:
            return "<sparseresid.Histogram closed>"
        return "<sparseresid.Histogram %d bins over [%g, %g]>" % (self.bins, self.lo, self.hi)


def entropy(x, bins=100, seed=0):
    """Histogram entropy of the finite values of x over [min, max] and its
    random baseline (the same rule on as many Gaussian draws from seed).
    Returns dict(count, bits, random_bits, ratio)."""
    m = _Mat(x, "x", flat=True)
    out = _sized(_EntropyResult)
    _check(_lib.sresid_entropy(*m.args(), int(bins), int(seed), byref(out)))
    return {"count": int(out.count), "bits": out.bits, "random_bits": out.random_bits,
            "ratio": out.ratio}


def entropy_random(count, bins=100, seed=0):
    """Entropy in bits of count standard-normal draws (the library's generator,
    from seed) binned over their own [min, max]; NaN for count < 2."""
    out = c_double()
    _check(_lib.sresid_entropy_random(int(count), int(bins), int(seed), byref(out)))
    return out.value


def participation_ratio(a):
    """(PR, PR / min(rows, cols)) of a float32 matrix, PR = (sum s^2)^2 / sum s^4
    over its singular values (from a Gram matrix, no SVD); NaN for zero."""
    m = _Mat(a)
    pr, norm = c_double(), c_double()
    _check(_lib.sresid_participation_ratio(*m.args(), byref(pr), byref(norm)))
    return pr.value, norm.value


def correlation(x, y):
    """Pearson r of two float32 arrays with the same number of values
    (C-contiguous, compared element by element in memory order) over the
    positions where both are finite; NaN when either is constant there."""
    mx, my = _Mat(x, "x", flat=True), _Mat(y, "y", flat=True)
    if mx.array.size != my.array.size:
        raise ValueError("x and y differ in size (%d vs %d)" % (mx.array.size, my.array.size))
    if mx.rows > 1 or my.rows > 1:  # only 2-D strided views get here with rows > 1
        raise ValueError("x and y must be C-contiguous")
    out = c_double()
    _check(_lib.sresid_correlation(mx.ptr, my.ptr, mx.array.size, byref(out)))
    return out.value


def lowfreq_ratio(a, band=0.125):
    """Share of the 2-D DFT power of the mean-removed matrix in the band
    |k1| <= floor(band * rows / 2), |k2| <= floor(band * cols / 2) (DC
    excluded), over that band's share for white noise. 1 for noise, >> 1 for
    smooth matrices; NaN when constant or the band holds only DC."""
    m = _Mat(a)
    out = c_double()
    _check(_lib.sresid_lowfreq_ratio(*m.args(), float(band), byref(out)))
    return out.value


def _kmeans_opts(seed, max_iter, n_init):
    opts = _sized(_KmeansOpts)
    opts.seed = int(seed)
    opts.max_iter = int(max_iter)
    n_init = KMEANS_INIT_AUTO if n_init == "auto" else int(n_init)
    opts.n_init = 0 if n_init == 1 else n_init  # 0 means 1, also to a 1.0 library
    return opts


def kmeans_fit(a, k, seed=0, max_iter=0, n_init=1):
    """k-means on the rows of a float32 matrix (k-means++ from seed, then Lloyd
    until stable, until the centres move less than the tolerance, or
    max_iter; 0 means 100), n_init runs from seeds derived from seed (the
    first is seed itself; "auto": by the size, as the report), the lowest
    inertia kept. Returns (labels
    int32[rows], centers float32[k, cols], inertia, iterations of the kept
    run)."""
    m = _Mat(a)
    k = int(k)
    labels = np.empty(m.rows, dtype=np.int32)
    centers = np.empty((max(k, 0), m.cols), dtype=np.float32)
    inertia, iters = c_double(), c_int32()
    opts = _kmeans_opts(seed, max_iter, n_init)
    _check(_lib.sresid_kmeans_fit(*m.args(), k, byref(opts), labels.ctypes.data,
                                    centers.ctypes.data, byref(inertia), byref(iters)))
    return labels, centers, inertia.value, int(iters.value)


def kmeans_explained(a, ks=KMEANS_DEFAULT_KS, seed=0, max_iter=0, n_init=1):
    """Explained variance 1 - W_K / T for each K in ks, with the same figure
    on a Gaussian matrix of the same shape and variance (n_init runs on
    each, the lowest inertia kept). Returns a list of dict(k, iterations,
    explained, explained_random, difference)."""
    m = _Mat(a)
    kl = [int(k) for k in ks]
    karr = np.array(kl, dtype=np.int32)
    out = (_KmeansResult * max(len(kl), 1))()
    for r in out:
        r.size = ctypes.sizeof(_KmeansResult)
    opts = _kmeans_opts(seed, max_iter, n_init)
    _check(_lib.sresid_kmeans_explained(*m.args(), karr.ctypes.data if kl else None, len(kl),
                                          byref(opts), out))
    return [{"k": int(r.k), "iterations": int(r.iterations), "explained": r.explained,
             "explained_random": r.explained_random, "difference": r.difference}
            for r in out[:len(kl)]]


def sparsity(x):
    """Energy concentration of the values of x: dict(elements_for_energy =
    share of elements, largest |x| first, holding 50/90/99 % of sum x^2;
    hoyer; energy_in_top = share of sum x^2 in the top 1/10/50 % of
    elements). See SPARSITY_ENERGY_LEVELS and SPARSITY_TOP_SHARES."""
    m = _Mat(x, "x", flat=True)
    out = _sized(_SparsityResult)
    _check(_lib.sresid_sparsity(*m.args(), byref(out)))
    return {"elements_for_energy": tuple(out.elements_for_energy), "hoyer": out.hoyer,
            "energy_in_top": tuple(out.energy_in_top)}


def permutation_null(probe, a, param=0.0, draws=20, seed=0):
    """One probe (PROBE_PR, PROBE_LOWFREQ with param = band, PROBE_KMEANS with
    param = K; or "pr", "lowfreq", "kmeans") on a matrix against draws random
    permutations of its entries. Returns dict(draws, observed, mean, std, z)."""
    if isinstance(probe, str):
        try:
            code = _PROBE_NAMES[probe.lower()]
        except KeyError:
            raise ValueError("probe must be one of %s" % ", ".join(sorted(_PROBE_NAMES))) \
                from None
    else:
        code = int(probe)
    m = _Mat(a)
    out = _sized(_NullResult)
    _check(_lib.sresid_permutation_null(code, *m.args(), float(param), int(draws), int(seed),
                                          byref(out)))
    return {"draws": int(out.draws), "observed": out.observed, "mean": out.mean,
            "std": out.std, "z": out.z}


__all__ += [
    "PROBE_MOMENTS", "PROBE_ENTROPY", "PROBE_PR", "PROBE_LOWFREQ", "PROBE_KMEANS",
    "PROBE_SPARSITY", "PROBE_CORRELATION", "PROBE_ALL", "Moments", "Histogram", "entropy",
    "entropy_random", "participation_ratio", "correlation", "lowfreq_ratio", "kmeans_fit",
    "kmeans_explained", "sparsity", "permutation_null", "has_function",
]


REPORT_FAIL_NONFINITE = 0x1  # report.h
GROUP_ALL = -1
JSON_INDENT = 0x1


class Report(_Handle):
    """The residual report (report.h) over a Residual or one Model.

    Options as in sresid_report_opts: probes (PROBE_* bits), kinds (list of kind
    names or a bit mask), bins, band, seed, ks, null_draws, threads,
    fail_nonfinite, kmeans_restarts (0: by each matrix's size, see
    KMEANS_INIT_AUTO); progress, a callable(done, total, name) after each unit
    of work (Ctrl-C stops the run: docs/python.md, "Progress and Ctrl-C").
    The figures are read with json() (the documented JSON
    document as a dict) or the struct accessors tensor(i), group(g), layer(i)."""

    _what = "report"

    def __init__(self, source, probes=0, kinds=0, bins=0, band=0.0, seed=0, ks=None,
                 null_draws=0, threads=0, fail_nonfinite=False, progress=None,
                 kmeans_restarts=0):
        self._h = None
        if isinstance(kinds, (list, tuple)):
            names = {kind_name(k): k for k in range(5)}
            kinds = sum(1 << names[k] for k in kinds)
        opts = _sized(_ReportOpts)
        opts.probes, opts.kinds, opts.bins, opts.band, opts.seed = (
            int(probes), int(kinds), int(bins), float(band), int(seed))
        opts.flags = REPORT_FAIL_NONFINITE if fail_nonfinite else 0
        opts.null_draws, opts.threads = int(null_draws), int(threads)
        opts.kmeans_restarts = int(kmeans_restarts)
        self._ks = None
        if ks is not None:
            self._ks = (c_int32 * len(ks))(*[int(k) for k in ks])
            opts.ks, opts.nks = ctypes.cast(self._ks, POINTER(c_int32)), len(ks)
        out = c_void_p()
        if isinstance(source, Residual):
            _monitored(progress, _lib.sresid_report_residual, source._h, byref(opts),
                       byref(out))
        elif isinstance(source, Model):
            _monitored(progress, _lib.sresid_report_model, source._handle(), byref(opts),
                       byref(out))
        else:
            raise TypeError("source must be a Residual or a Model")
        self._h = out
        # the one policy (docs/conventions.md, "Non-finite values"): counted,
        # excluded, and said
        bad = self.group(GROUP_ALL)["nonfinite"]
        if bad:
            import warnings
            warnings.warn("%d NaN or Inf values counted and excluded (those tensors get no "
                          "matrix figures); fail_nonfinite=True refuses them" % bad,
                          RuntimeWarning, stacklevel=2)

    def close(self):
        if getattr(self, "_h", None) is not None:
            _lib.sresid_report_free(self._h)
            self._h = None

    def json(self):
        """The report as the JSON document of docs/report.md, parsed."""
        import json as _json
        text = c_void_p()
        _check(_lib.sresid_report_json(self._handle(), 0, byref(text)))
        try:
            return _json.loads(ctypes.string_at(text).decode("utf-8"))
        finally:
            _lib.sresid_free(text)

    def save_json(self, path, indent=True):
        _check(_lib.sresid_report_save_json(self._handle(), JSON_INDENT if indent else 0,
                                            _bytes(path, "path")))

    def __len__(self):
        return int(_lib.sresid_report_tensor_count(self._handle()))

    @staticmethod
    def _dict(st):
        d = {}
        for name, _ in st._fields_:
            v = getattr(st, name)
            if name == "size":
                continue
            d[name] = _str(v) if isinstance(v, bytes) else (list(v) if hasattr(v, "_length_")
                                                             else v)
        return d

    def _stack(self, fn, i):
        out = c_char_p()
        _check(fn(self._handle(), int(i), byref(out)))
        return _str(out.value)

    def tensor(self, i):
        st = _sized(_TensorReport)
        _check(_lib.sresid_report_tensor(self._handle(), int(i), byref(st)))
        d = self._dict(st)
        d["stack"] = self._stack(_lib.sresid_report_tensor_stack, i)
        return d

    def group(self, group=GROUP_ALL):
        if isinstance(group, str):
            group = GROUP_ALL if group == "all" else {kind_name(k): k for k in range(5)}[group]
        st = _sized(_GroupReport)
        _check(_lib.sresid_report_group(self._handle(), int(group), byref(st)))
        return self._dict(st)

    def layers(self):
        out = []
        for i in range(_lib.sresid_report_layer_count(self._handle())):
            st = _sized(_LayerReport)
            _check(_lib.sresid_report_layer(self._handle(), i, byref(st)))
            d = self._dict(st)
            d["stack"] = self._stack(_lib.sresid_report_layer_stack, i)
            out.append(d)
        return out

    def layer_correlation(self, per_role=False):
        count = _lib.sresid_report_pair_count if per_role else \
            _lib.sresid_report_layer_correlation_count
        get = _lib.sresid_report_pair if per_role else _lib.sresid_report_layer_correlation
        stack = _lib.sresid_report_pair_stack if per_role else \
            _lib.sresid_report_layer_correlation_stack
        out = []
        for i in range(count(self._handle())):
            st = _sized(_CorrelationReport)
            _check(get(self._handle(), i, byref(st)))
            d = self._dict(st)
            d["stack"] = self._stack(stack, i)
            out.append(d)
        return out

    def kmeans(self, i):
        """k-means figures of tensor i, one dict per K of the options."""
        out = []
        for j in range(len(self.json()["options"]["ks"]) if self._ks is None else len(self._ks)):
            st = _sized(_KmeansResult)
            _check(_lib.sresid_report_tensor_kmeans(self._handle(), int(i), j, byref(st)))
            out.append(self._dict(st))
        return out


__all__ += ["Report", "REPORT_FAIL_NONFINITE", "GROUP_ALL"]


# ---- masks and optimisers (mask.h, optim.h) ----
MASK_AND, MASK_OR, MASK_ANDNOT, MASK_XOR = 1, 2, 3, 4
OPTIM_ADAMW, OPTIM_SGD = 1, 2
OPTIM_NO_BIAS_CORRECTION, OPTIM_NESTEROV = 0x1, 0x2


def _f32_vec(a, what, n=None, writeable=False):
    """A C-contiguous native float32 array for a zero-copy call."""
    if not isinstance(a, np.ndarray) or a.dtype != np.float32:
        raise TypeError("%s must be a numpy float32 array" % what)
    if not a.flags.c_contiguous:
        raise ValueError("%s must be C-contiguous" % what)
    if writeable and not a.flags.writeable:
        raise ValueError("%s must be writeable" % what)
    if n is not None and a.size != n:
        raise ValueError("%s holds %d entries, want %d" % (what, a.size, n))
    return a


def _count(n, what="n"):
    """A non-negative entry count (negative ones would wrap to 2^64 - 1)."""
    n = int(n)
    if n < 0:
        raise ValueError("%s must be >= 0, not %d" % (what, n))
    return n


def _offsets(offsets):
    """(keep-alive array, pointer, nseg) for segment offsets (None: one segment)."""
    if offsets is None:
        return None, None, 0
    raw = np.asarray(offsets)
    if raw.size and np.issubdtype(raw.dtype, np.signedinteger) and raw.min() < 0:
        raise ValueError("offsets must be >= 0")
    arr = np.ascontiguousarray(raw.astype(np.uint64))
    if arr.ndim != 1 or arr.size < 1:
        raise ValueError("offsets must be a 1-D sequence of nseg + 1 entries")
    return arr, arr.ctypes.data, arr.size - 1


class Mask(_Handle):
    """A bitset over n entries (mask.h). Build one with Mask.create,
    Mask.from_numpy, Mask.top, Mask.random or Mask.load."""

    _what = "mask"

    def __init__(self, handle):
        if not handle:
            raise ValueError("use Mask.create(), from_numpy(), top(), random() or load()")
        self._h = c_void_p(handle)

    def close(self):
        if getattr(self, "_h", None) is not None and self._h.value:
            _lib.sresid_mask_free(self._h)
        self._h = None

    @classmethod
    def create(cls, n, value=False):
        out = c_void_p()
        _check(_lib.sresid_mask_create(_count(n), 1 if value else 0, byref(out)))
        return cls(out.value)

    @classmethod
    def from_numpy(cls, flags):
        """From a 1-D array: non-zero (True) entries are set."""
        arr = np.asarray(flags)
        if arr.ndim != 1:
            raise ValueError("flags must be 1-D")
        b = np.ascontiguousarray(arr != 0).view(np.uint8)
        out = c_void_p()
        _check(_lib.sresid_mask_from_bytes(b.ctypes.data if b.size else None, b.size,
                                           byref(out)))
        return cls(out.value)

    @classmethod
    def top(cls, x, fraction, offsets=None):
        """The top fraction of x by |x| (per segment with offsets)."""
        x = _f32_vec(x, "x")
        keep, ptr, nseg = _offsets(offsets)
        out = c_void_p()
        _check(_lib.sresid_mask_top(x.ctypes.data if x.size else None, x.size,
                                    float(fraction), ptr, nseg, byref(out)))
        del keep
        return cls(out.value)

    @classmethod
    def random(cls, n, fraction, seed=0, offsets=None):
        """Exactly round(fraction * n_j) random entries of each segment."""
        keep, ptr, nseg = _offsets(offsets)
        out = c_void_p()
        _check(_lib.sresid_mask_random(_count(n), float(fraction), int(seed), ptr, nseg,
                                       byref(out)))
        del keep
        return cls(out.value)

    @classmethod
    def load(cls, path):
        out = c_void_p()
        _check(_lib.sresid_mask_load(_bytes(path, "path"), byref(out)))
        return cls(out.value)

    def save(self, path, no_clobber=False):
        opts = _SaveOpts(size=ctypes.sizeof(_SaveOpts),
                         flags=SAVE_NO_CLOBBER if no_clobber else 0)
        _check(_lib.sresid_mask_save(self._handle(), _bytes(path, "path"), byref(opts)))

    def copy(self):
        out = c_void_p()
        _check(_lib.sresid_mask_copy(self._handle(), byref(out)))
        return Mask(out.value)

    def to_numpy(self):
        """The entries as a new numpy bool array."""
        n = len(self)
        out = np.empty(n, dtype=np.uint8)
        _check(_lib.sresid_mask_to_bytes(self._handle(), out.ctypes.data if n else None, n))
        return out.view(np.bool_)

    def __len__(self):
        return int(_lib.sresid_mask_size(self._handle()))

    def count(self, first=None, length=None):
        """Set entries, all of them or those in [first, first + length)."""
        if first is None and length is None:
            return int(_lib.sresid_mask_count(self._handle()))
        first = 0 if first is None else int(first)
        length = len(self) - first if length is None else int(length)
        out = c_uint64()
        _check(_lib.sresid_mask_count_range(self._handle(), first, length, byref(out)))
        return int(out.value)

    def _index(self, i):
        n, j = len(self), int(i)
        if j < 0:
            j += n
        if not 0 <= j < n:
            raise IndexError("entry %d of a mask of %d entries" % (int(i), n))
        return j

    def __getitem__(self, i):
        v = c_int32()
        _check(_lib.sresid_mask_get(self._handle(), self._index(i), byref(v)))
        return bool(v.value)

    def __setitem__(self, i, value):
        _check(_lib.sresid_mask_set(self._handle(), self._index(i), 1 if value else 0))

    def combine(self, other, op):
        """In place: self = self OP other (MASK_AND, MASK_OR, MASK_ANDNOT, MASK_XOR)."""
        if not isinstance(other, Mask):
            raise TypeError("other must be a Mask")
        _check(_lib.sresid_mask_combine(self._handle(), other._handle(), int(op)))
        return self

    def invert(self):
        """In place complement."""
        _check(_lib.sresid_mask_not(self._handle()))
        return self

    def __iand__(self, other):
        return self.combine(other, MASK_AND)

    def __ior__(self, other):
        return self.combine(other, MASK_OR)

    def __ixor__(self, other):
        return self.combine(other, MASK_XOR)

    def __isub__(self, other):
        return self.combine(other, MASK_ANDNOT)

    def __and__(self, other):
        return self.copy().combine(other, MASK_AND)

    def __or__(self, other):
        return self.copy().combine(other, MASK_OR)

    def __xor__(self, other):
        return self.copy().combine(other, MASK_XOR)

    def __sub__(self, other):
        return self.copy().combine(other, MASK_ANDNOT)

    def __invert__(self):
        return self.copy().invert()

    def jaccard(self, other):
        if not isinstance(other, Mask):
            raise TypeError("jaccard wants a Mask, not %s" % type(other).__name__)
        out = c_double()
        _check(_lib.sresid_mask_jaccard(self._handle(), other._handle(), byref(out)))
        return out.value

    def apply(self, x):
        """Zero, in place, the entries of the float32 array x whose bit is clear."""
        x = _f32_vec(x, "x", writeable=True)
        _check(_lib.sresid_mask_apply(self._handle(), x.ctypes.data if x.size else None,
                                      x.size))
        return x

    def drop_grow(self, keep, grow, share, offsets=None):
        """Drop the share of set entries with the smallest keep, grow as many
        with the largest grow (per segment); returns the Mask of changed entries."""
        n = len(self)
        keep = _f32_vec(keep, "keep", n)
        grow = _f32_vec(grow, "grow", n)
        hold, ptr, nseg = _offsets(offsets)
        changed = Mask.create(n)
        _check(_lib.sresid_mask_drop_grow(self._handle(), keep.ctypes.data if n else None,
                                          grow.ctypes.data if n else None, n, float(share),
                                          ptr, nseg, changed._handle()))
        del hold
        return changed

    def __repr__(self):
        if self._h is None:
            return "<sparseresid.Mask closed>"
        return "<sparseresid.Mask %d of %d set>" % (self.count(), len(self))


class Optim(_Handle):
    """A masked optimiser (optim.h) for float32 vectors of n entries.

    Optim(n, kind="adamw" or "sgd", lr=, beta1=, beta2=, eps=, weight_decay=,
    momentum=, nesterov=, bias_correction=); zero (the default) means the
    library's default. step() updates a numpy float32 array in place."""

    _what = "optimiser"

    def __init__(self, n, kind="adamw", lr=0.0, beta1=0.0, beta2=0.0, eps=0.0,
                 weight_decay=0.0, momentum=0.0, nesterov=False, bias_correction=True,
                 _handle=None):
        self._h = None
        if _handle is not None:
            self._h = c_void_p(_handle)
            self._owner = _Owner(_handle, _lib.sresid_optim_free)
            return
        kinds = {"adamw": OPTIM_ADAMW, "sgd": OPTIM_SGD}
        code = kinds.get(kind, kind) if isinstance(kind, str) else int(kind)
        if isinstance(code, str):
            raise ValueError("kind must be 'adamw' or 'sgd', not %r" % kind)
        o = _sized(_OptimOpts)
        o.kind = code
        o.flags = (OPTIM_NESTEROV if nesterov else 0) | (
            0 if bias_correction else OPTIM_NO_BIAS_CORRECTION)
        o.lr, o.beta1, o.beta2, o.eps = float(lr), float(beta1), float(beta2), float(eps)
        o.weight_decay, o.momentum = float(weight_decay), float(momentum)
        out = c_void_p()
        _check(_lib.sresid_optim_create(_count(n), byref(o), byref(out)))
        self._h = out
        self._owner = _Owner(out.value, _lib.sresid_optim_free)

    def close(self):
        """Close the optimiser; its memory is freed once no state view
        (state(copy=False)) is left. Idempotent."""
        self._h = None
        self._owner = None

    @classmethod
    def load(cls, path):
        out = c_void_p()
        _check(_lib.sresid_optim_load(_bytes(path, "path"), byref(out)))
        return cls(0, _handle=out.value)

    def save(self, path, no_clobber=False):
        opts = _SaveOpts(size=ctypes.sizeof(_SaveOpts),
                         flags=SAVE_NO_CLOBBER if no_clobber else 0)
        _check(_lib.sresid_optim_save(self._handle(), _bytes(path, "path"), byref(opts)))

    def __len__(self):
        return int(_lib.sresid_optim_size(self._handle()))

    @property
    def steps(self):
        return int(_lib.sresid_optim_steps(self._handle()))

    def opts(self):
        """The options in effect, defaults filled in, as a dict."""
        o = _sized(_OptimOpts)
        _check(_lib.sresid_optim_get_opts(self._handle(), byref(o)))
        return {"kind": "adamw" if o.kind == OPTIM_ADAMW else "sgd", "flags": int(o.flags),
                "lr": o.lr, "beta1": o.beta1, "beta2": o.beta2, "eps": o.eps,
                "weight_decay": o.weight_decay, "momentum": o.momentum}

    @property
    def lr(self):
        return self.opts()["lr"]

    @lr.setter
    def lr(self, value):
        _check(_lib.sresid_optim_set_lr(self._handle(), float(value)))

    def step(self, params, grad, mask=None):
        """One step on params (C-contiguous float32, updated in place) with grad,
        for the entries mask allows (None: all)."""
        n = len(self)
        params = _f32_vec(params, "params", writeable=True)
        grad = _f32_vec(grad, "grad")
        if mask is not None and not isinstance(mask, Mask):
            raise TypeError("mask must be a Mask or None")
        if params.size != grad.size:
            raise ValueError("params holds %d entries, grad %d" % (params.size, grad.size))
        _check(_lib.sresid_optim_step(self._handle(), params.ctypes.data if params.size else None,
                                      grad.ctypes.data if grad.size else None, params.size,
                                      None if mask is None else mask._handle()))
        return params

    def reset(self, mask=None):
        """Zero the state of the entries in mask (None: all, and the step counter)."""
        _check(_lib.sresid_optim_reset(self._handle(),
                                       None if mask is None else mask._handle()))

    def state(self, copy=True):
        """(m, v) as numpy float32 arrays (v is None for SGD). copy=False gives
        read-only views into the optimiser's memory, which stays allocated
        for as long as a view does, also after close()."""
        n = len(self)
        m, v = c_void_p(), c_void_p()
        _check(_lib.sresid_optim_state(self._handle(), byref(m), byref(v)))

        def view(p):
            if p.value is None:
                return None
            a = _view_of(self._owner, p.value, ctypes.c_float, np.float32, (n,), False)
            return a.copy() if copy else a
        return view(m), view(v)

    def __repr__(self):
        if self._h is None:
            return "<sparseresid.Optim closed>"
        return "<sparseresid.Optim %s n=%d steps=%d>" % (self.opts()["kind"], len(self),
                                                         self.steps)


__all__ += ["Mask", "Optim", "MASK_AND", "MASK_OR", "MASK_ANDNOT", "MASK_XOR", "OPTIM_ADAMW",
            "OPTIM_SGD", "OPTIM_NO_BIAS_CORRECTION", "OPTIM_NESTEROV"]


# ---- amplitude basis (amp.h) ----
AMP_DIAG, AMP_CORE = 0, 1
RULE_MAGNITUDE, RULE_RANDOM, RULE_GRADIENT, RULE_WARMUP = 1, 2, 3, 4
SELECT_PER_TENSOR = 0x1
MATERIALIZE_ADD = 0x1
PROJECT_ACCUMULATE, PROJECT_ABS = 0x1, 0x2

_AMP_LAYOUTS = {"diag": AMP_DIAG, "core": AMP_CORE}
_RULES = {"magnitude": RULE_MAGNITUDE, "random": RULE_RANDOM, "gradient": RULE_GRADIENT,
          "warmup": RULE_WARMUP}


def _pick(table, value, what):
    if isinstance(value, str):
        try:
            return table[value]
        except KeyError:
            raise ValueError("%s must be one of %s" % (what, ", ".join(table))) from None
    return int(value)


def _kind_bits(kinds):
    """None (attention and mlp), "all", a list of kind names/KIND_* or bits."""
    if kinds is None:
        return 0
    if isinstance(kinds, str):
        if kinds == "all":
            return (1 << KIND_COUNT) - 1
        kinds = [kinds]
    if isinstance(kinds, (list, tuple, set, frozenset)):
        return sum(1 << _pick(_KINDS, k, "kind") for k in set(kinds))
    return int(kinds)


class Amp(_Handle):
    """Amplitude-only fine-tuning (amp.h): each selected matrix of a base
    model kept as W0 = U diag(s0) V^T, U and V frozen, only the scores trained.

        with sr.Model.open("base.safetensors") as base:
            amp = sr.Amp.create(base, layout="diag", kinds="all")
            amp.scores[:] *= 1.01            # a zero-copy view: writes go to the library
            w = amp.materialize(0)           # W0 + U diag(s - s0) V^T as numpy

    The base Model must stay open while the amp lives (closing it closes the
    amp first). The arrays of scores, initial_scores, offsets and basis() are
    views of the library's memory, which stays allocated for as long as any
    view does: closing the amp or its base, or deleting them, never leaves a
    view reading freed memory."""

    _what = "amp"

    def __init__(self, handle, base):
        if not handle:
            raise ValueError("use Amp.create() or Amp.load()")
        self._h = c_void_p(handle)
        self._owner = _Owner(handle, _lib.sresid_amp_free)
        self.base = base
        base._residuals.add(self)  # the model closes its dependants first

    @classmethod
    def create(cls, base, layout="diag", rank=0, kinds=None, pattern=None, min_dim=0,
               threads=0, progress=None):
        """SVD bases of the base model's float matrices of the given kinds
        (None: attention and mlp; "all"; or a list of names) whose name
        matches pattern (a glob). progress: callable(done, total, name)
        after each basis; Ctrl-C stops the call."""
        if not isinstance(base, Model):
            raise TypeError("base must be a Model")
        opts = _sized(_AmpOpts)
        opts.layout = _pick(_AMP_LAYOUTS, layout, "layout")
        opts.rank, opts.kinds, opts.threads = int(rank), _kind_bits(kinds), int(threads)
        opts.pattern = None if pattern is None else _bytes(pattern, "pattern")
        opts.min_dim = int(min_dim)
        out = c_void_p()
        _monitored(progress, _lib.sresid_amp_create, base._handle(), byref(opts), byref(out))
        return cls(out.value, base)

    @classmethod
    def load(cls, base, path, progress=None):
        """A state saved by save() onto base: returns (amp, mask), mask None
        when none was saved. progress: callable(done, total, name) after
        each base tensor checked; Ctrl-C stops the call."""
        if not isinstance(base, Model):
            raise TypeError("base must be a Model")
        out, mask = c_void_p(), c_void_p()
        _monitored(progress, _lib.sresid_amp_load, base._handle(), _bytes(path, "path"),
                   byref(out), byref(mask))
        amp = cls(out.value, base)
        return amp, (Mask(mask.value) if mask.value else None)

    def close(self):
        """Close the amp (not its base). Idempotent. Its memory is freed once
        no view (scores, initial_scores, offsets, basis) is left; the views
        stay valid until then."""
        if getattr(self, "_h", None) is not None:
            self._h = None
            self._owner = None
            self.base._residuals.discard(self)

    # -- sizes and facts --
    def __len__(self):
        return int(_lib.sresid_amp_count(self._handle()))

    @property
    def score_count(self):
        return int(_lib.sresid_amp_score_count(self._handle()))

    @property
    def layout(self):
        """"diag" or "core"."""
        return "core" if _lib.sresid_amp_layout(self._handle()) == AMP_CORE else "diag"

    def _t(self, t):
        n, i = len(self), int(t)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("tensor %d of an amp of %d tensors" % (int(t), n))
        return i

    def tensor(self, t):
        """dict(name, index, rows, cols, rank, offset, count) of selected tensor t."""
        info = _sized(_AmpTensorInfo)
        _check(_lib.sresid_amp_tensor(self._handle(), self._t(t), byref(info)))
        return {"name": _str(info.name), "index": int(info.index), "rows": int(info.rows),
                "cols": int(info.cols), "rank": int(info.rank), "offset": int(info.offset),
                "count": int(info.count)}

    def tensors(self):
        return [self.tensor(t) for t in range(len(self))]

    def names(self):
        return [self.tensor(t)["name"] for t in range(len(self))]

    # -- zero-copy views --
    def _view(self, ptr, ctype, dtype, shape, writeable):
        return _view_of(self._owner, ptr, ctype, dtype, shape, writeable)

    @property
    def scores(self):
        """The score vector as a writeable float32 view of the library's memory."""
        h = self._handle()
        return self._view(_lib.sresid_amp_scores(h), ctypes.c_float, np.float32,
                          (self.score_count,), True)

    @property
    def initial_scores(self):
        """s0 as a read-only float32 view."""
        h = self._handle()
        return self._view(_lib.sresid_amp_initial_scores(h), ctypes.c_float, np.float32,
                          (self.score_count,), False)

    @property
    def offsets(self):
        """Segment offsets (count + 1, uint64), read-only: tensor t's scores are
        scores[offsets[t]:offsets[t + 1]]."""
        h = self._handle()
        return self._view(_lib.sresid_amp_offsets(h), ctypes.c_uint64, np.uint64,
                          (len(self) + 1,), False)

    def basis(self, t):
        """(U, V) of tensor t as read-only float32 views, rows x rank and cols x rank."""
        t = self._t(t)
        info = self.tensor(t)
        u, v = c_void_p(), c_void_p()
        _check(_lib.sresid_amp_basis(self._handle(), t, byref(u), byref(v)))
        return (self._view(u.value, ctypes.c_float, np.float32, (info["rows"], info["rank"]),
                           False),
                self._view(v.value, ctypes.c_float, np.float32, (info["cols"], info["rank"]),
                           False))

    def reset(self):
        """Every score back to s0."""
        _check(_lib.sresid_amp_reset(self._handle()))

    # -- weights and gradients --
    def materialize(self, t, out=None, add=False):
        """W = W0 + U (S - S0) V^T of tensor t as a float32 (rows, cols) array
        (or into out, a 2-D float32 array with unit column stride; with add,
        out += U (S - S0) V^T)."""
        t = self._t(t)
        info = self.tensor(t)
        if out is None:
            if add:
                raise ValueError("add=True needs out")
            out = np.empty((info["rows"], info["cols"]), dtype=np.float32)
        m = _Mat(out, "out")
        if (m.rows, m.cols) != (info["rows"], info["cols"]):
            raise ValueError("out is %dx%d, tensor %d is %dx%d" % (m.rows, m.cols, t,
                                                                  info["rows"], info["cols"]))
        if not m.array.flags.writeable:
            raise ValueError("out must be writeable")
        _check(_lib.sresid_amp_materialize(self._handle(), t, m.ptr, m.ld,
                                           MATERIALIZE_ADD if add else 0))
        return out

    def project(self, t, grad, out=None, mask=None, accumulate=False, abs=False):
        """The score gradient of tensor t from dL/dW (a float32 rows x cols
        array): diag(U^T G V) (diag) or U^T G V (core), written into tensor t's
        segment of out (score_count float32; new zeros when None), added with
        accumulate, |.| added with abs. Returns out."""
        t = self._t(t)
        info = self.tensor(t)
        g = _Mat(grad, "grad")
        if (g.rows, g.cols) != (info["rows"], info["cols"]):
            raise ValueError("grad is %dx%d, tensor %d is %dx%d" % (g.rows, g.cols, t,
                                                                   info["rows"], info["cols"]))
        if out is None:
            out = np.zeros(self.score_count, dtype=np.float32)
        out = _f32_vec(out, "out", self.score_count, writeable=True)
        if mask is not None and not isinstance(mask, Mask):
            raise TypeError("mask must be a Mask")
        flags = (PROJECT_ACCUMULATE if accumulate else 0) | (PROJECT_ABS if abs else 0)
        _check(_lib.sresid_amp_project(self._handle(), t, g.ptr, g.ld,
                                       out.ctypes.data if out.size else None,
                                       None if mask is None else mask._handle(), flags))
        return out

    # -- selection --
    def select(self, rule, fraction, per_tensor=False, seed=0, saliency=None):
        """A Mask of the given fraction of the scores by rule: "magnitude"
        (largest |s0|), "random" (from seed), "gradient" (largest |saliency|,
        score_count float32) or "warmup" (largest |s - s0|)."""
        opts = _sized(_SelectOpts)
        opts.flags = SELECT_PER_TENSOR if per_tensor else 0
        opts.seed = int(seed)
        if saliency is not None:
            saliency = _f32_vec(saliency, "saliency", self.score_count)
            opts.saliency = saliency.ctypes.data if saliency.size else None
        out = c_void_p()
        _check(_lib.sresid_amp_select(self._handle(), _pick(_RULES, rule, "rule"),
                                      float(fraction), byref(opts), byref(out)))
        return Mask(out.value)

    def drop_grow(self, mask, share, saliency, per_tensor=False):
        """The dynamic rule's update, in place on mask and the scores: drop the
        share of active scores with the smallest |s - s0| (back to s0), grow
        as many inactive ones with the largest saliency. Returns the Mask of
        changed entries (reset their optimiser state)."""
        if not isinstance(mask, Mask):
            raise TypeError("mask must be a Mask")
        n = self.score_count
        saliency = _f32_vec(saliency, "saliency", n)
        changed = Mask.create(len(mask))
        _check(_lib.sresid_amp_drop_grow(self._handle(), mask._handle(), float(share),
                                         saliency.ctypes.data if n else None,
                                         SELECT_PER_TENSOR if per_tensor else 0,
                                         changed._handle()))
        return changed

    # -- closed forms --
    def fit(self, trained, mask=None, progress=None):
        """The best scores for a trained Model (S - S0 = U^T R V, or its
        diagonal), only where mask allows; the others back to s0.
        progress: callable(done, total, name) after each tensor; Ctrl-C
        stops the call and leaves the scores as they were."""
        if not isinstance(trained, Model):
            raise TypeError("trained must be a Model")
        if mask is not None and not isinstance(mask, Mask):
            raise TypeError("mask must be a Mask")
        _monitored(progress, _lib.sresid_amp_fit, self._handle(), trained._handle(),
                   None if mask is None else mask._handle())

    def share(self, trained, fractions=(), per_tensor=False, progress=None):
        """Share of the residual energy the scores can capture. Returns a dict:
        names (the selected tensors, then "total"), energy and captured
        (count + 1 float64 each; the last row is the total), and
        captured_magnitude, captured_oracle ((count + 1) x len(fractions)):
        the share when only a fraction of the scores may change, chosen by
        |s0| or by |U^T R V|. progress: callable(done, total, name) after
        each tensor; Ctrl-C stops the call."""
        if not isinstance(trained, Model):
            raise TypeError("trained must be a Model")
        fr = np.ascontiguousarray(np.asarray(fractions, dtype=np.float64).ravel())
        rows, nf = len(self) + 1, fr.size
        energy, captured = np.empty(rows), np.empty(rows)
        cm, co = np.empty((rows, nf)), np.empty((rows, nf))
        _monitored(progress, _lib.sresid_amp_share, self._handle(), trained._handle(),
                   fr.ctypes.data if nf else None, nf, SELECT_PER_TENSOR if per_tensor else 0,
                   energy.ctypes.data, captured.ctypes.data, cm.ctypes.data if nf else None,
                   co.ctypes.data if nf else None)
        return {"names": self.names() + ["total"], "fractions": fr.tolist(), "energy": energy,
                "captured": captured, "captured_magnitude": cm, "captured_oracle": co}

    def export(self, progress=None):
        """A new in-memory Model: the base with the selected tensors rebuilt.
        progress: callable(done, total, name) after each base tensor;
        Ctrl-C stops the call."""
        out = c_void_p()
        _monitored(progress, _lib.sresid_amp_export, self._handle(), byref(out))
        return Model(out.value)

    def save(self, path, mask=None, no_clobber=False, progress=None):
        """Save basis, scores and mask as safetensors (amp.h, docs/formats.md).
        progress: callable(done, total, name) after each base tensor hashed
        and each tensor written; Ctrl-C stops the call, writing nothing."""
        if mask is not None and not isinstance(mask, Mask):
            raise TypeError("mask must be a Mask")
        opts = _SaveOpts(size=ctypes.sizeof(_SaveOpts),
                         flags=SAVE_NO_CLOBBER if no_clobber else 0)
        _monitored(progress, _lib.sresid_amp_save, self._handle(),
                   None if mask is None else mask._handle(), _bytes(path, "path"), byref(opts))

    def __repr__(self):
        if self._h is None:
            return "<sparseresid.Amp closed>"
        return "<sparseresid.Amp %d tensors, %d scores, %s>" % (len(self), self.score_count,
                                                                self.layout)


__all__ += ["Amp", "AMP_DIAG", "AMP_CORE", "MATERIALIZE_ADD", "PROJECT_ACCUMULATE", "PROJECT_ABS", "RULE_MAGNITUDE", "RULE_RANDOM", "RULE_GRADIENT",
            "RULE_WARMUP", "SELECT_PER_TENSOR"]



# ---- sparse residuals (residual.h) ----
SPARSE_TOP = 1
SPARSE_TOP_PER_TENSOR = 2
SPARSE_THRESHOLD = 3
SPARSE_ENERGY = 4
SPARSE_DARE = 5
SPARSE_IN_MEMORY = 0x1
SPARSE_ROUNDED = 0x2
APPLY_FORCE = 0x2

_SPARSE_RULES = {"top": SPARSE_TOP, "top_per_tensor": SPARSE_TOP_PER_TENSOR,
                 "threshold": SPARSE_THRESHOLD, "energy": SPARSE_ENERGY, "dare": SPARSE_DARE}
_VALUE_DTYPES = {"f32": DTYPE_F32, "f16": DTYPE_F16, "bf16": DTYPE_BF16}
_DTYPE_TEXT = {DTYPE_U8: "U8", DTYPE_U16: "U16", DTYPE_U32: "U32", DTYPE_U64: "U64",
               DTYPE_F16: "F16", DTYPE_BF16: "BF16", DTYPE_F32: "F32", DTYPE_F64: "F64",
               DTYPE_F8_E5M2: "F8_E5M2", DTYPE_F8_E4M3: "F8_E4M3"}


class Sparse(_Handle):
    """A sparse residual: the kept entries of each tensor of a residual.

    Sparse.create(residual, rule="top", param=0.1, dtype="f32", seed=0,
    in_memory=False, rounded=False) selects them; Sparse.load(path) reads a
    delta file. It owns its data: the residual may be closed afterwards."""

    _what = "sparse residual"

    def __init__(self, handle):
        if not handle:
            raise ValueError("use Sparse.create() or Sparse.load()")
        self._h = c_void_p(handle)

    @classmethod
    def create(cls, residual, rule="top", param=0.0, dtype="f32", seed=0, in_memory=False,
               rounded=False, threads=0, progress=None):
        """A sparse residual (residual.h, sresid_sparse_create): rule "top",
        "top-per-tensor", "threshold", "energy" or "dare" with its param.
        progress: callable(done, total, name) after each tensor of each
        pass; Ctrl-C stops the call."""
        if not isinstance(residual, Residual):
            raise TypeError("residual must be a Residual")
        if isinstance(rule, str):
            if rule.lower() not in _SPARSE_RULES:
                raise ValueError("rule must be one of %s" % ", ".join(sorted(_SPARSE_RULES)))
            rule = _SPARSE_RULES[rule.lower()]
        if isinstance(dtype, str):
            if dtype.lower() not in _VALUE_DTYPES:
                raise ValueError("dtype must be f32, f16 or bf16")
            dtype = _VALUE_DTYPES[dtype.lower()]
        opts = _SparseOpts(size=ctypes.sizeof(_SparseOpts), rule=int(rule),
                           dtype=int(dtype), param=float(param), seed=int(seed),
                           threads=int(threads),
                           flags=(SPARSE_IN_MEMORY if in_memory else 0) |
                           (SPARSE_ROUNDED if rounded else 0))
        out = c_void_p()
        _monitored(progress, _lib.sresid_sparse_create, residual._handle(), byref(opts),
                   byref(out))
        return cls(out.value)

    @classmethod
    def load(cls, path):
        out = c_void_p()
        _check(_lib.sresid_sparse_load(_bytes(path, "path"), byref(out)))
        return cls(out.value)

    def close(self):
        """Free the sparse residual. Idempotent."""
        if getattr(self, "_h", None) is not None:
            _lib.sresid_sparse_free(self._h)
            self._h = None

    def __len__(self):
        return int(_lib.sresid_sparse_count(self._handle()))

    def _index(self, i):
        n = len(self)
        j = int(i)
        if j < 0:
            j += n
        if not 0 <= j < n:
            raise IndexError("tensor index %d out of range (%d tensors)" % (int(i), n))
        return j

    def info(self, i=None):
        """Facts and error report of tensor i, or of all tensors when i is None."""
        j = ALL if i is None else self._index(i)
        out = _SparseInfo()
        out.size = ctypes.sizeof(_SparseInfo)
        _check(_lib.sresid_sparse_info_get(self._handle(), j, byref(out)))
        d = {k: getattr(out, k) for k in ("numel", "kept", "bytes", "dense_bytes", "ratio",
                                         "energy", "kept_energy", "error")}
        d["value_dtype"] = _DTYPE_TEXT.get(out.value_dtype)
        if i is not None:
            d["name"] = _str(out.name)
            d["shape"] = tuple(out.shape[k] for k in range(out.ndim))
            d["base_dtype"] = _DTYPE_TEXT.get(out.base_dtype)
            d["index_dtype"] = _DTYPE_TEXT.get(out.index_dtype)
        return d

    def names(self):
        return [self.info(i)["name"] for i in range(len(self))]

    def entries(self, i):
        """(positions as uint64, values as float32) of tensor i, positions ascending."""
        j = self._index(i)
        k = self.info(j)["kept"]
        pos = np.empty(k, dtype=np.uint64)
        val = np.empty(k, dtype=np.float32)
        _check(_lib.sresid_sparse_entries(self._handle(), j, pos.ctypes.data_as(c_void_p),
                                          val.ctypes.data_as(c_void_p), k))
        return pos, val

    def save(self, path, no_clobber=False, progress=None):
        """Save as safetensors, whole or not at all. progress:
        callable(done, total, name) after each stored part; Ctrl-C stops
        the call, writing nothing."""
        opts = _SaveOpts(size=ctypes.sizeof(_SaveOpts), flags=SAVE_NO_CLOBBER if no_clobber else 0)
        _monitored(progress, _lib.sresid_sparse_save, self._handle(), _bytes(path, "path"),
                   byref(opts))

    def apply(self, base, path, scale=1.0, force=False, no_clobber=False, progress=None):
        """Write base + scale * self to path as a full safetensors model.
        progress: callable(done, total, name) after each delta tensor
        checked and each base tensor written; Ctrl-C stops the call,
        writing nothing."""
        if not isinstance(base, Model):
            raise TypeError("base must be a Model")
        opts = _ApplyOpts(size=ctypes.sizeof(_ApplyOpts), scale=float(scale),
                          flags=(APPLY_FORCE if force else 0) |
                          (SAVE_NO_CLOBBER if no_clobber else 0))
        _monitored(progress, _lib.sresid_sparse_apply, self._handle(), base._handle(),
                   byref(opts), _bytes(path, "path"))

    def __repr__(self):
        if self._h is None:
            return "<sparseresid.Sparse closed>"
        return "<sparseresid.Sparse %d tensors, %d kept>" % (len(self), self.info()["kept"])


__all__ += ["Sparse", "SPARSE_TOP", "SPARSE_TOP_PER_TENSOR", "SPARSE_THRESHOLD",
            "SPARSE_ENERGY", "SPARSE_DARE", "SPARSE_IN_MEMORY", "SPARSE_ROUNDED",
            "APPLY_FORCE"]
