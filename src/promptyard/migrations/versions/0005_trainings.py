"""trainings: LoRA fine-tuning runs

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 19:30:00.000000

"""
from alembic import op
import sqlalchemy as sa

import promptyard.db.types


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('trainings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', promptyard.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', promptyard.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', promptyard.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('base_model', sa.String(length=100), nullable=False),
    sa.Column('model_name', sa.String(length=100), nullable=False),
    sa.Column('method', sa.String(length=10), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('data_summary', sa.JSON(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('resumed_from_step', sa.Integer(), nullable=True),
    sa.Column('total_steps', sa.Integer(), nullable=False),
    sa.Column('losses', sa.JSON(), nullable=False),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('output_dir', sa.Text(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('job_id', sa.String(length=100), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trainings'))
    )
    with op.batch_alter_table('trainings', schema=None) as batch_op:
        batch_op.create_index('ix_trainings_status', ['status'], unique=False)


def downgrade():
    with op.batch_alter_table('trainings', schema=None) as batch_op:
        batch_op.drop_index('ix_trainings_status')

    op.drop_table('trainings')
