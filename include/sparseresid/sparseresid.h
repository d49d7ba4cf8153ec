/*
 * libsparseresid — residuals of neural-network checkpoints and amplitude-only
 * fine-tuning. This header includes every public module.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef SPARSERESID_H
#define SPARSERESID_H

#include "common.h"
#include "model.h"
#include "residual.h"
#include "probe.h"
#include "report.h"
#include "mask.h"
#include "optim.h"
#include "amp.h"

#endif /* SPARSERESID_H */
