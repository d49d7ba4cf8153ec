/* Private declarations of the residual module. Never installed. */
#ifndef SPARSERESID_RESIDUAL_RESIDUAL_H
#define SPARSERESID_RESIDUAL_RESIDUAL_H

#include "model/model.h"

/* ---- residual (residual.c) ---- */
/* The base model a residual pairs (borrowed). */
const sresid_model *sresid__residual_base(const sresid_residual *r);
/* The trained model it pairs (borrowed). */
const sresid_model *sresid__residual_trained(const sresid_residual *r);

#endif /* SPARSERESID_RESIDUAL_RESIDUAL_H */
