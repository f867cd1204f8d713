"""job leases: one owner per evaluation run, renewed by heartbeats

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 19:30:00

"""
from alembic import op
import sqlalchemy as sa

import promptyard.db.types


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('job_leases',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('owner', sa.String(length=200), nullable=False),
    sa.Column('acquired_at', promptyard.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', promptyard.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', promptyard.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_job_leases'))
    )


def downgrade():
    op.drop_table('job_leases')
